// SPDX-License-Identifier: GPL-2.0-only
/*
 * memfill: write a pattern over most of the nested guest's RAM and verify it.
 *
 *   memfill [-k MiB to leave free] [-p passes]
 *
 * Maps MemAvailable minus what it leaves (64 MiB by default), writes every
 * 8-byte word with a value made of its address and the pass number, then
 * reads every word back.  Prints the MiB and the time of each pass; exits 1 on
 * the first wrong word.  Each pass writes new values, so a second pass
 * re-touches memory the first one faulted in.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long mem_available_mib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib < 0 ? -1 : kib >> 10;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t word(uint64_t i, uint64_t pass)
{
	return (i * 0x9e3779b97f4a7c15ULL) ^ (pass << 56) ^ 0x5a5a5a5a;
}

int main(int argc, char **argv)
{
	long keep = 64, passes = 1, mib;
	uint64_t *p, i, n, pass;
	int opt;

	while ((opt = getopt(argc, argv, "k:p:")) != -1) {
		if (opt == 'k')
			keep = atol(optarg);
		else if (opt == 'p')
			passes = atol(optarg);
		else
			return 2;
	}
	mib = mem_available_mib() - keep;
	if (mib <= 0) {
		fprintf(stderr, "memfill: FAIL: no memory to fill\n");
		return 1;
	}
	n = (uint64_t)mib << 17;	/* words */
	p = mmap(NULL, n * 8, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		perror("memfill: FAIL: mmap");
		return 1;
	}
	for (pass = 1; pass <= (uint64_t)passes; pass++) {
		double t0 = now(), t1;

		for (i = 0; i < n; i++)
			p[i] = word(i, pass);
		t1 = now();
		for (i = 0; i < n && p[i] == word(i, pass); i++)
			;
		if (i < n) {
			printf("memfill: FAIL: pass %lu, word %lu of %ld MiB: %#lx, not %#lx\n",
			       (unsigned long)pass, (unsigned long)i, mib,
			       (unsigned long)p[i], (unsigned long)word(i, pass));
			return 1;
		}
		printf("memfill: pass %lu: %ld MiB written in %.2f s, verified in %.2f s\n",
		       (unsigned long)pass, mib, t1 - t0, now() - t1);
	}
	return 0;
}
