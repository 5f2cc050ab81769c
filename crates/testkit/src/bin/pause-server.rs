//! The ground-truth server of `bench/accuracy.sh` (see
//! `testkit::pause_server`): `pause-server [ADDR] [PAUSE_MS EVERY_MS]`
//! listens on ADDR (default 127.0.0.1:0), prints where, and serves until
//! killed; `GET /__residence` answers its residence quantiles.

use std::net::SocketAddr;
use std::time::Duration;

use testkit::pause_server::{PauseServer, Pauses};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pause-server [ADDR] [PAUSE_MS EVERY_MS]";
    if args.iter().any(|a| a == "-h" || a == "--help") || args.len() > 3 {
        eprintln!("{usage}");
        std::process::exit(if args.len() > 3 { 2 } else { 0 });
    }
    let addr: SocketAddr = match args.first().map(|a| a.parse()) {
        None => "127.0.0.1:0".parse().expect("a valid address"),
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            eprintln!("pause-server: bad address {:?}: {e}\n{usage}", args[0]);
            std::process::exit(2);
        }
    };
    let ms = |i: usize| -> Duration {
        match args.get(i).map(|a| a.parse::<f64>()) {
            None => Duration::ZERO,
            Some(Ok(v)) if v >= 0.0 && v.is_finite() => Duration::from_secs_f64(v / 1000.0),
            Some(_) => {
                eprintln!("pause-server: bad milliseconds {:?}\n{usage}", args[i]);
                std::process::exit(2);
            }
        }
    };
    let pauses = Pauses {
        pause: ms(1),
        every: ms(2),
    };
    let server = PauseServer::start(addr, pauses).unwrap_or_else(|e| {
        eprintln!("pause-server: cannot listen on {addr}: {e}");
        std::process::exit(1);
    });
    println!("listening on {}", server.addr());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
