# Summarises the markdown table of backend_ops per op: rows, the worst error / tolerance and
# failures. Usage: awk -f scripts/backend_ops_summary.awk backend_ops-output.md
BEGIN { FS = "|" }
/^\| [a-z_]+ \|/ && $11 ~ /PASS|FAIL/ {
  op = $2; gsub(/ /, "", op); n[op]++
  e = $6; gsub(/^ +| +$/, "", e); t = $8; gsub(/^ +/, "", t); sub(/ .*/, "", t)
  if (e ~ /^[0-9.e+-]+$/ && t + 0 > 0 && e / t > w[op]) w[op] = e / t
  if ($11 ~ /FAIL/) f[op]++
}
END {
  print "| op | checks | worst error / tolerance | failed |"
  print "|---|---|---|---|"
  fflush()
  for (o in n) printf "| %s | %d | %.2f | %d |\n", o, n[o], w[o], f[o] + 0 | "sort"
}
