# bench/plot.gp: proxy CPU time per request as grouped bars, one group per test and
# one bar per proxy. bench/run.sh calls it as
#
#   gnuplot -e "datafile='chart.tsv'; outfile='results-cpu.png'; term='pngcairo'; \
#               ntargets=3; subtitle='...'" bench/plot.gp
#
# chart.tsv is tab-separated: a header "test<TAB>proxy..." and one line per test
# with CPU µs per request for each proxy (NaN: not measured).
set encoding utf8
if (term eq 'pngcairo') {
    set terminal pngcairo size 1100,560 enhanced font 'sans,10'
} else {
    set terminal png size 1100,560
}
set output outfile
set datafile separator "\t"
set datafile missing "NaN"
set key autotitle columnheader top left
set title "Proxy CPU time per request (lower is better)\n{/*0.8 ".subtitle."}"
set ylabel "CPU µs per request (user+system)"
set style fill solid 0.85 border -1
set boxwidth 0.9 absolute
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set xtics nomirror scale 0
set border 3
set tics out
set ytics nomirror

gap = 1
stats datafile using 0 nooutput
groups = STATS_records
set xrange [-1 : groups * (ntargets + gap) - gap]
x(row, j) = row * (ntargets + gap) + j
center(row) = row * (ntargets + gap) + (ntargets - 1) / 2.0
lab(v) = v == v ? sprintf("%.1f", v) : ""

plot for [j=1:ntargets] datafile using (x($0, j - 1)):(column(j + 1)) with boxes lc j title columnheader(j + 1), \
     for [j=1:ntargets] datafile using (x($0, j - 1)):(column(j + 1)):(lab(column(j + 1))) \
         with labels offset 0, 0.7 font ",8" notitle, \
     datafile using (center($0)):(NaN):xtic(1) notitle
