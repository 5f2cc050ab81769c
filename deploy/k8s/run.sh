#!/bin/sh
# Runs one sharded hammer run on the cluster of the current kubectl context
# and exits with the merged report's code: 0 the SLO kept, 3 violated, 4 a
# shard missing (see shards.yaml and report.yaml).
#
#   SLO='p99<60ms,error-rate<0.1%' LEAD=60 deploy/k8s/run.sh
#
# LEAD: seconds from now to the shared start, long enough for every pod to
# be scheduled and pull its image (a shard that starts late says so).
set -eu
cd "$(dirname "$0")"
LEAD=${LEAD:-60}
SLO=${SLO:-p99<60ms,error-rate<0.1%}
TIMEOUT=${TIMEOUT:-3600}

start_at=$(( $(date +%s) + LEAD ))
kubectl apply -f results.yaml
kubectl delete job hammer-shards hammer-report --ignore-not-found --wait
# The start instant, computed once, for every pod.
kubectl create configmap hammer-run \
  --from-literal=start-at="$start_at" --from-literal=slo="$SLO" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f shards.yaml

# Waits for job $1 to end, completed or failed.
finished() {
  end=$(( $(date +%s) + TIMEOUT ))
  while [ "$(date +%s)" -lt "$end" ]; do
    state=$(kubectl get job "$1" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
    case "$state" in *Complete*|*Failed*) return 0 ;; esac
    sleep 5
  done
  echo "job $1 did not end within ${TIMEOUT}s" >&2
  return 1
}

finished hammer-shards
kubectl apply -f report.yaml
finished hammer-report
kubectl logs job/hammer-report
code=$(kubectl get pods -l job-name=hammer-report \
  -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
exit "${code:-1}"
