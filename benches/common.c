/* melon-ipc benchmark: helpers and the message content shared by every figure. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bench.h"

size_t msg_size;
long msg_count, msg_burst;
int msg_workers;
unsigned char *msg;

void die(const char *what)
{
    fprintf(stderr, "ipc_bench (pid %d): %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(EXIT_ERRNO);
}

void fail(const char *what)
{
    fprintf(stderr, "ipc_bench (pid %d): check failed: %s\n", (int)getpid(), what);
    exit(EXIT_CHECK);
}

long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Peak resident set of a process in KiB (VmHWM), or -1. */
long peak_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long v = -1;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &v) == 1) break;
    fclose(f);
    return v;
}

/* 1 while PID exists and is not a zombie (a dead child nobody has reaped yet). */
int proc_alive(pid_t pid)
{
    char path[64], buf[512], *p;
    size_t n;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL || p[1] == '\0' || p[2] == '\0') return 1;
    return p[2] != 'Z' && p[2] != 'X';
}

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + 3); }

void make_msg(void)
{
    size_t i;
    msg = malloc(msg_size < 4 ? 4 : msg_size);
    if (msg == NULL) die("malloc");
    for (i = 0; i < msg_size; ++i) msg[i] = pattern(i);
}

void set_seq(unsigned char *p, uint32_t seq) { memcpy(p, &seq, 4); }

/* Checks one received payload: its sequence number, and the whole content of the last. */
void check_msg(const unsigned char *p, size_t len, long seq, long count)
{
    uint32_t got;
    size_t i;
    if (len != msg_size) fail("payload length");
    memcpy(&got, p, 4);
    if (got != (uint32_t)seq) fail("sequence number (order or exactly-once)");
    if (seq == count - 1)
        for (i = 4; i < len; ++i)
            if (p[i] != pattern(i)) fail("content of the last message");
}
