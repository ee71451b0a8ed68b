# Draws bench/compare's summary: one panel per measure, one bar per target.
#   gnuplot -e "datafile='R.dat'; outfile='R.png'; subtitle='...'; have='1 1 1 1 1 1 1'" \
#       bench/plot.gp
# R.dat has a header line, then one row per target:
#   target mem9k mem50k cpu throughput added_p50 added_p99 handshakes colour
# with "?" where a target has no figure (direct has no proxy memory or CPU).
# `have` says, per measure, whether any target has a figure; a measure that
# was not run gets an empty panel (gnuplot cannot plot a column of "?").
if (!exists("datafile")) datafile = "results.dat"
if (!exists("outfile")) outfile = "results.png"
if (!exists("subtitle")) subtitle = ""
if (!exists("have")) have = "1 1 1 1 1 1 1"

set terminal pngcairo size 1600,820 font "sans,10"
set output outfile
set datafile missing "?"
set style fill solid 0.85 border -1
set boxwidth 0.7
set grid ytics lc rgb "#dddddd"
set border 3
set xtics nomirror scale 0
set ytics nomirror
set key off
set offsets 0.3, 0.3, graph 0.1, 0
# The last column picks the colour, so that a target keeps it in every run:
# 1 direct, 2 wsgate, 3 nginx, 4 HAProxy.
set linetype 1 lc rgb "#9e9e9e"
set linetype 2 lc rgb "#1f77b4"
set linetype 3 lc rgb "#2ca02c"
set linetype 4 lc rgb "#d62728"

titles = "'memory per idle connection, 9,000 conns' \
'memory per idle connection, 50,000 conns' \
'CPU per echoed message (lower is better)' \
'closed-loop throughput, 100 conns (higher is better)' \
'added round-trip latency p50 (lower is better)' \
'added round-trip latency p99 (lower is better)' \
'handshakes per second (higher is better)'"
ylabels = "'bytes (user space)' 'bytes (user space)' 'µs' 'messages/s' 'ms over direct' \
'ms over direct' 'connections/s'"
formats = "%.0f %.0f %.2f %.0f %.3f %.3f %.0f"

# One slot per target, the same in every panel, whether or not it has a
# bar there (direct has no memory figure).
stats datafile using 0 nooutput
slots = STATS_records

set multiplot layout 2,4 title "wsgate vs nginx vs HAProxy as WebSocket proxies (loopback)\n".subtitle font ",12"
do for [i = 1:7] {
    col = i + 1
    set title word(titles, i)
    set ylabel word(ylabels, i)
    set autoscale xy
    if (word(have, i) eq "1") {
        # Bars start at 0; latency differences may go below it.
        stats datafile using col nooutput
        set yrange [(STATS_min < 0 ? STATS_min : 0):*]
        set xrange [-0.6:slots - 0.4]
        set border 3
        set xtics nomirror scale 0
        set ytics nomirror
        fmt = word(formats, i)
        plot datafile using 0:col:9:xtic(1) with boxes lc variable, \
             '' using 0:col:(sprintf(fmt, column(col))) with labels offset 0,0.7
    } else {
        unset border
        unset xtics
        unset ytics
        set yrange [0:1]
        set xrange [0:1]
        set label 1 "not measured in this run" at graph 0.5, 0.5 center
        plot 2 notitle
        unset label 1
    }
}
unset multiplot
