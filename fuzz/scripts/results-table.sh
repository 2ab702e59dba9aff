#!/usr/bin/env bash
# Print the README's results table rows from a campaign's log (fuzz/work/logs/campaign.log).
cd "$(dirname "$0")/.."
grep ' end ' work/logs/campaign.log | while read -r ts _ t rc rest; do
  execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$rest")
  cov=$(sed -E 's/.* cov: ([0-9]+) .*/\1/' <<<"$rest")
  ft=$(sed -E 's/.* ft: ([0-9]+) .*/\1/' <<<"$rest")
  corp=$(sed -E 's/.* corp: ([0-9]+) .*/\1/' <<<"$rest")
  secs=$(sed -E 's/.* time: ([0-9]+)s.*/\1/' <<<"$rest")
  crashes=$(sed -E 's|.*oom/timeout/crash: ([0-9/]+) .*|\1|' <<<"$rest")
  printf '| %s | %.1f | %s | %s | %s | %s | %s |\n' "$t" "$(echo "$secs/60" | bc -l)" "$execs" "$cov" "$ft" "$corp" "$crashes"
done
