/* bench/restart_reader.c: the reader of bench/restart.  Built by the script
 * (cc -O2 -static: it also runs inside a container whose image has no libc),
 * not by meson.
 *
 *   restart-reader [--held N] [--drop-ms MS] [--seed S] [--max-secs S]
 *                  ROOT REFDIR LIST LOG RESULT STOP
 *
 * LIST names files (one relative path a line) that exist under ROOT (the
 * mount) and under REFDIR (the source tree, read into memory at start).  In
 * rounds, in an order shuffled per round, each file is opened, read in 1 MiB
 * read()s and closed under ROOT, its bytes compared with the source; then the
 * N largest files, opened once at the start and held, are read again through
 * those fds (pread).  Every --drop-ms it writes 3 to /proc/sys/vm/drop_caches
 * between two reads (if it can; in a container it cannot, and the host drops
 * them), so reads reach the FUSE server.
 *
 * LOG gets one line per file read: "START_NS TOTAL_NS MAXCALL_NS STATUS KIND
 * INDEX", START_NS CLOCK_REALTIME (the clock bash's EPOCHREALTIME reads),
 * TOTAL_NS open+reads+close, MAXCALL_NS the longest of those syscalls, STATUS
 * 0 right, 1 a syscall failed, 2 wrong bytes or size; KIND o (open, read,
 * close) or h (held fd).  ROUNDS (RESULT.rounds) is rewritten after each
 * round.  It runs until the file STOP exists (or --max-secs), then writes one
 * JSON object to RESULT and exits 0 if every read was right. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUF (1 << 20)
#define MAX_ERR 20

struct file {
	char *rel;
	unsigned char *ref;
	size_t size;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t rng;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static char *errs[MAX_ERR];
static int n_errs;
static void note(const char *fmt, const char *a, const char *b)
{
	if (n_errs >= MAX_ERR)
		return;
	char m[512];
	snprintf(m, sizeof(m), fmt, a, b);
	errs[n_errs++] = strdup(m);
}

static int load(const char *path, struct file *f)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(path);
		return -1;
	}
	f->size = (size_t)st.st_size;
	f->ref = malloc(f->size ? f->size : 1);
	size_t off = 0;
	while (f->ref && off < f->size) {
		ssize_t n = read(fd, f->ref + off, f->size - off);
		if (n <= 0) {
			perror(path);
			return -1;
		}
		off += (size_t)n;
	}
	close(fd);
	return f->ref ? 0 : -1;
}

/* One timed syscall: its length goes to *max. */
#define TIMED(max, expr)                                                                           \
	({                                                                                         \
		int64_t t0_ = now_ns();                                                            \
		__typeof__(expr) r_ = (expr);                                                      \
		int64_t d_ = now_ns() - t0_;                                                       \
		if (d_ > *(max))                                                                   \
			*(max) = d_;                                                               \
		r_;                                                                                \
	})

/* Reads f through fd (held: pread from 0) or by path; 0 right, 1 error, 2 wrong. */
static int read_one(const char *root, struct file *f, int held_fd, unsigned char *buf, int64_t *max)
{
	char path[4096];
	int fd = held_fd;
	if (fd < 0) {
		snprintf(path, sizeof(path), "%s/%s", root, f->rel);
		fd = TIMED(max, open(path, O_RDONLY | O_CLOEXEC));
		if (fd < 0) {
			note("open %s: %s", f->rel, strerror(errno));
			return 1;
		}
	}
	int st = 0;
	size_t off = 0;
	for (;;) {
		ssize_t n = held_fd >= 0 ? TIMED(max, pread(fd, buf, BUF, (off_t)off))
					 : TIMED(max, read(fd, buf, BUF));
		if (n < 0) {
			note("read %s: %s", f->rel, strerror(errno));
			st = 1;
			break;
		}
		if (n == 0)
			break;
		if (off + (size_t)n > f->size || memcmp(buf, f->ref + off, (size_t)n) != 0) {
			note("%s: wrong bytes%s", f->rel,
			     off + (size_t)n > f->size ? " (too long)" : "");
			st = 2;
			break;
		}
		off += (size_t)n;
	}
	if (st == 0 && off != f->size) {
		note("%s: %s", f->rel, "short");
		st = 2;
	}
	if (held_fd < 0 && TIMED(max, close(fd)) < 0 && st == 0) {
		note("close %s: %s", f->rel, strerror(errno));
		st = 1;
	}
	return st;
}

static void write_rounds(const char *result, long rounds)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s.rounds", result);
	FILE *r = fopen(p, "w");
	if (r) {
		fprintf(r, "%ld\n", rounds);
		fclose(r);
	}
}

int main(int argc, char **argv)
{
	int held_n = 2, drop_ms = 500;
	long seed = 16;
	double max_secs = 3600;
	int i = 1;
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (!strcmp(argv[i], "--held"))
			held_n = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--drop-ms"))
			drop_ms = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seed"))
			seed = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--max-secs"))
			max_secs = atof(argv[i + 1]);
		else
			break;
	}
	if (argc - i != 6) {
		fprintf(stderr, "usage: restart-reader [--held N] [--drop-ms MS] [--seed S] "
				"[--max-secs S] ROOT REFDIR LIST LOG RESULT STOP\n");
		return 2;
	}
	const char *root = argv[i], *refdir = argv[i + 1], *list = argv[i + 2];
	const char *logp = argv[i + 3], *result = argv[i + 4], *stop = argv[i + 5];
	rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)seed;

	FILE *lf = fopen(list, "r");
	if (!lf) {
		perror(list);
		return 2;
	}
	struct file *files = NULL;
	size_t nf = 0, cap = 0;
	char line[4096];
	while (fgets(line, sizeof(line), lf)) {
		line[strcspn(line, "\n")] = 0;
		if (!*line)
			continue;
		if (nf == cap) {
			cap = cap ? cap * 2 : 1024;
			files = realloc(files, cap * sizeof(*files));
			if (!files)
				return 2;
		}
		char p[8192];
		snprintf(p, sizeof(p), "%s/%s", refdir, line);
		files[nf].rel = strdup(line);
		if (load(p, &files[nf]) < 0)
			return 2;
		nf++;
	}
	fclose(lf);
	if (nf == 0) {
		fprintf(stderr, "%s: no files\n", list);
		return 2;
	}
	/* the held files: the largest */
	if (held_n > (int)nf)
		held_n = (int)nf;
	size_t *held = calloc((size_t)held_n + 1, sizeof(*held));
	int *held_fd = calloc((size_t)held_n + 1, sizeof(*held_fd));
	for (int h = 0; h < held_n; h++) {
		size_t best = 0;
		int have = 0;
		for (size_t k = 0; k < nf; k++) {
			int taken = 0;
			for (int j = 0; j < h; j++)
				taken |= held[j] == k;
			if (!taken && (!have || files[k].size > files[best].size)) {
				best = k;
				have = 1;
			}
		}
		held[h] = best;
		char p[8192];
		snprintf(p, sizeof(p), "%s/%s", root, files[best].rel);
		held_fd[h] = open(p, O_RDONLY | O_CLOEXEC);
		if (held_fd[h] < 0) {
			perror(p);
			return 2;
		}
	}
	size_t *order = malloc(nf * sizeof(*order));
	unsigned char *buf = malloc(BUF);
	FILE *log = fopen(logp, "w");
	if (!order || !buf || !log) {
		perror(logp);
		return 2;
	}
	static char logbuf[1 << 20];
	setvbuf(log, logbuf, _IOFBF, sizeof(logbuf));
	for (size_t k = 0; k < nf; k++)
		order[k] = k;

	long rounds = 0, reads = 0, failed = 0, wrong = 0, drops = 0;
	int can_drop = drop_ms > 0;
	int64_t t_end = now_ns() + (int64_t)(max_secs * 1e9), last_drop = now_ns();
	int stopped = 0;
	write_rounds(result, 0);
	while (!stopped && now_ns() < t_end) {
		for (size_t k = nf - 1; k > 0; k--) {
			size_t j = (size_t)(next_rand() % (k + 1)), t = order[k];
			order[k] = order[j];
			order[j] = t;
		}
		for (size_t k = 0; k < nf + (size_t)held_n; k++) {
			if (access(stop, F_OK) == 0 && rounds > 0) {
				stopped = 1;
				break;
			}
			if (can_drop && now_ns() - last_drop >= (int64_t)drop_ms * 1000000) {
				int dfd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
				if (dfd < 0 || write(dfd, "3\n", 2) != 2)
					can_drop = 0;
				else
					drops++;
				if (dfd >= 0)
					close(dfd);
				last_drop = now_ns();
			}
			int h = k >= nf ? (int)(k - nf) : -1;
			struct file *f = h >= 0 ? &files[held[h]] : &files[order[k]];
			int64_t max = 0, t0 = now_ns();
			int st = read_one(root, f, h >= 0 ? held_fd[h] : -1, buf, &max);
			int64_t t1 = now_ns();
			fprintf(log, "%lld %lld %lld %d %c %zu\n", (long long)t0,
				(long long)(t1 - t0), (long long)max, st, h >= 0 ? 'h' : 'o',
				(size_t)(f - files));
			reads++;
			failed += st == 1;
			wrong += st == 2;
			if (st) { /* a dead mount fails fast: do not flood the log */
				struct timespec ts = {0, 1000000};
				nanosleep(&ts, NULL);
			}
		}
		fflush(log);
		if (!stopped)
			write_rounds(result, ++rounds);
	}
	fclose(log);
	FILE *r = fopen(result, "w");
	if (!r) {
		perror(result);
		return 2;
	}
	fprintf(
	    r,
	    "{\"rounds\": %ld, \"reads\": %ld, \"failed\": %ld, \"wrong\": %ld, \"files\": %zu, "
	    "\"held\": %d, \"drops\": %ld, \"dropped_caches_itself\": %s, \"errors\": [",
	    rounds, reads, failed, wrong, nf, held_n, drops, drops > 0 ? "true" : "false");
	for (int e = 0; e < n_errs; e++) {
		fputc('"', r);
		for (const char *c = errs[e]; *c; c++)
			if (*c == '"' || *c == '\\')
				fprintf(r, "\\%c", *c);
			else if ((unsigned char)*c >= 0x20)
				fputc(*c, r);
		fprintf(r, "\"%s", e + 1 < n_errs ? ", " : "");
	}
	fprintf(r, "]}\n");
	fclose(r);
	return failed || wrong ? 1 : 0;
}
