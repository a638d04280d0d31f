# Shared by the bench scripts (sourced, not run).

# Share of the CPU (percent) in use over one second, from /proc/stat. The scripts call it
# when nothing of theirs runs, so anything above a few percent is someone else's work.
cpu_busy_percent() {
    local _cpu u n s i w x y z total1 idle1 total2 idle2
    read -r _cpu u n s i w x y z _ </proc/stat
    total1=$((u + n + s + i + w + x + y + z)) idle1=$((i + w))
    sleep 1
    read -r _cpu u n s i w x y z _ </proc/stat
    total2=$((u + n + s + i + w + x + y + z)) idle2=$((i + w))
    echo $((100 * ((total2 - total1) - (idle2 - idle1)) / (total2 - total1 + 1)))
}
