# Plots of one `make bench` run, from its CSVs (scripts/bench.sh runs this):
#   gnuplot -e "dir='results/DATE'" bench/plot.gp
# faults_per_gib.png: stage-2 faults per GiB taken by each backing, against
# the physical limit; conversion_latency.png: median and p99 latency of each
# conversion, per backing; vmm.png: QEMU boot to the guest's init and the
# guest's memory passes, per backing (bench/vmm.sh).
set datafile separator ','
set terminal pngcairo size 1200,700 font ',10' noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set grid ytics
set xtics rotate by -30 nomirror
set bmargin 14
set rmargin 12

set output dir.'/faults_per_gib.png'
set title 'Stage-2 faults to map 1 GiB (log scale; lower is better)'
set logscale y
set yrange [0.5:*]
set ylabel 'faults per GiB'
plot dir.'/fault_in.csv' using 7:xtic(1) skip 1 title 'measured (pf_fixed)', \
     '' using 8 skip 1 title 'physical limit'

set output dir.'/conversion_latency.png'
set title 'Conversion latency (one huge page; order-0 guest_memfd: 2M of it; log scale)'
set logscale y
set yrange [*:*]
set ylabel 'microseconds'
# The throughput rows (no latency) are left out.
lat = '< grep -v ",conversions " '.dir.'/conversion_latency.csv'
plot lat using ($4 * 1e6):xtic(substr(stringcolumn(1), 13, 99).': '.stringcolumn(2)) skip 1 \
	title 'median', \
     '' using ($5 * 1e6) skip 1 title 'p99'

# The VMM rows are left out with VMM_BENCH=0.
if (system('test -f '.dir.'/vmm.csv && echo yes') ne 'yes') exit
set output dir.'/vmm.png'
set title 'QEMU boots a guest with 2 GiB of RAM on each backing (log scale; lower is better)'
set logscale y
set yrange [*:*]
set ylabel 'seconds'
plot dir.'/vmm.csv' using 4:xtic(1) skip 1 title 'QEMU start to guest init', \
     '' using 7 skip 1 title 'write pass 1 (faults memory in)', \
     '' using 9 skip 1 title 'write pass 2 (re-touches it)'
