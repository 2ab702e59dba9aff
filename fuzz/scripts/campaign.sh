#!/usr/bin/env bash
# Long fuzzing campaign: each target in turn for SECONDS (default 600), one process at a time,
# at nice 19, libFuzzer in fork mode with one worker so a crash is saved and the run goes on.
# New corpus entries go to fuzz/work/<target>/ (ignored); the committed seeds are read from
# fuzz/corpus/<target>/. Crashes land in fuzz/artifacts/<target>/, logs in fuzz/work/logs/.
# Usage: fuzz/scripts/campaign.sh [SECONDS] [TARGET...]   (build first: see fuzz/README.md)
set -u
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(sip_parse sip_frame sdp rtp dtmf jitter config engine)
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p work/logs
for t in "${targets[@]}"; do
  dict=()
  case $t in
    sip_parse|sip_frame|engine) dict=(-dict=dict/sip.dict) ;;
    sdp) dict=(-dict=dict/sdp.dict) ;;
    config) dict=(-dict=dict/toml.dict) ;;
  esac
  mkdir -p "work/$t" "artifacts/$t"
  echo "$(date -u +%FT%TZ) start $t for ${secs}s" | tee -a work/logs/campaign.log
  nice -n 19 "$bin/$t" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="artifacts/$t/" "${dict[@]}" "work/$t" "corpus/$t" \
    > "work/logs/$t.log" 2>&1
  echo "$(date -u +%FT%TZ) end $t rc=$? $(grep -E '^#[0-9]+: cov' "work/logs/$t.log" | tail -1)" | tee -a work/logs/campaign.log
done
