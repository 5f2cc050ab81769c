//! The `mandelweb` binary; the program itself is [`mandelweb::app`].

fn main() -> anyhow::Result<()> {
    mandelweb::app::main_from(std::env::args_os())
}
