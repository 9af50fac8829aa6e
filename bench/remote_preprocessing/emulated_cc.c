/* sshcc bench (bench/remote_preprocessing/emulated.rs): an emulated compile that sleeps
 * EMULATED_SECONDS and writes the reference object and dependency list of the unit.
 *
 * A C program rather than a shell script because the saturation run starts 50 or more of
 * these a second on the same two cores as the client: the script's eight processes (sh,
 * date twice, tr, sleep, cp, sed) cost the "box" more CPU per job than sshcc's own work,
 * and the emulation is meant to use none. EMULATED_DATA and EMULATED_LOG are compiled in
 * (string literals) because the arguments are the user's compile command.
 *
 * Arguments: the source is the last non-option argument ending in .cc, .cpp, .ii or .i;
 * `-o OUT` and `-MF DEP` as gcc reads them. The unit's key is the source without its
 * extension and without a `__c…` copy suffix, with '/' as '+'. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Reads all of `path` into a malloc'd buffer; NULL if it cannot be opened. */
static char *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    *len = n;
    return buf;
}

static int spill(const char *path, const char *buf, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { close(fd); return -1; }
        buf += w;
        len -= (size_t)w;
    }
    return close(fd);
}

/* Appends `text` to `out`, growing it. */
static void put(char **out, size_t *len, size_t *cap, const char *text, size_t n) {
    while (*len + n > *cap) *out = realloc(*out, *cap *= 2);
    memcpy(*out + *len, text, n);
    *len += n;
}

int main(int argc, char **argv) {
    unsigned long long start = now_ns();
    const char *out = NULL, *dep = NULL, *src = NULL;
    for (int i = 1; i < argc; i++) {
        if (i > 1 && strcmp(argv[i - 1], "-o") == 0) out = argv[i];
        if (i > 1 && strcmp(argv[i - 1], "-MF") == 0) dep = argv[i];
        if (argv[i][0] != '-' && (ends_with(argv[i], ".cc") || ends_with(argv[i], ".cpp") ||
                                  ends_with(argv[i], ".ii") || ends_with(argv[i], ".i")))
            src = argv[i];
    }
    if (out == NULL) { fprintf(stderr, "emulated compile: no -o\n"); return 1; }

    char key[4096] = "";
    if (src != NULL) {
        snprintf(key, sizeof key, "%s", src);
        char *dot = strrchr(key, '.');
        if (dot != NULL) *dot = '\0';
        char *copy = NULL;
        for (char *p = strstr(key, "__c"); p != NULL; p = strstr(p + 1, "__c")) copy = p;
        if (copy != NULL) *copy = '\0';
        for (char *p = key; *p; p++)
            if (*p == '/') *p = '+';
    }

    struct timespec pause = {EMULATED_SECONDS, 0};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {}

    char path[8192];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s.o", EMULATED_DATA, key);
    char *object = src != NULL ? slurp(path, &len) : NULL;
    int known = object != NULL;
    if (!known) {
        snprintf(path, sizeof path, "%s/tiny.o", EMULATED_DATA);
        object = slurp(path, &len);
    }
    if (object == NULL || spill(out, object, len) != 0) {
        fprintf(stderr, "emulated compile: cannot write %s\n", out);
        return 1;
    }
    if (known && dep != NULL) {
        /* The template's @SRC@ (once) becomes the source as named, every @ROOT@ the
         * job's tree, <dirname of DEP>/root. */
        char root[4096];
        snprintf(root, sizeof root, "%s", dep);
        char *slash = strrchr(root, '/');
        if (slash != NULL) *slash = '\0'; else snprintf(root, sizeof root, ".");
        strncat(root, "/root", sizeof root - strlen(root) - 1);
        snprintf(path, sizeof path, "%s/%s.d", EMULATED_DATA, key);
        size_t tlen = 0;
        char *template = slurp(path, &tlen);
        if (template == NULL) { fprintf(stderr, "emulated compile: no %s\n", path); return 1; }
        size_t cap = tlen * 2 + 4096, n = 0;
        char *text = malloc(cap);
        int src_done = 0;
        for (size_t i = 0; i < tlen;) {
            if (!src_done && tlen - i >= 5 && memcmp(template + i, "@SRC@", 5) == 0) {
                put(&text, &n, &cap, src, strlen(src));
                src_done = 1;
                i += 5;
            } else if (tlen - i >= 6 && memcmp(template + i, "@ROOT@", 6) == 0) {
                put(&text, &n, &cap, root, strlen(root));
                i += 6;
            } else {
                put(&text, &n, &cap, template + i, 1);
                i += 1;
            }
        }
        if (spill(dep, text, n) != 0) {
            fprintf(stderr, "emulated compile: cannot write %s\n", dep);
            return 1;
        }
    }

    char line[64];
    int n = snprintf(line, sizeof line, "%llu %llu\n", start, now_ns());
    int log = open(EMULATED_LOG "/compiles.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (log < 0 || write(log, line, (size_t)n) != n) return 1;
    close(log);
    return 0;
}
