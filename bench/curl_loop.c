/* The floor of the per-call benchmark: what libcurl alone costs for the same
 * sequential POST, with the same request headers as the wecom session (one
 * easy handle, keep-alive, the reply kept in memory, nothing decoded).
 *   curl_loop URL BODY N  ->  prints calls per second                  */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct {
    char *data;
    size_t len, cap;
} buf;

static size_t keep(char *p, size_t size, size_t n, void *ud) {
    buf *b = (buf *)ud;
    size_t k = size * n;
    if (b->len + k > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *q;
        while (cap < b->len + k) cap *= 2;
        q = realloc(b->data, cap);
        if (q == NULL) return 0;
        b->data = q;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, k);
    b->len += k;
    return k;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    CURL *easy;
    struct curl_slist *headers = NULL;
    buf b = {NULL, 0, 0};
    long i, n;
    double t0;
    if (argc != 4) {
        fprintf(stderr, "usage: curl_loop URL BODY N\n");
        return 2;
    }
    n = atol(argv[3]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    easy = curl_easy_init();
    headers = curl_slist_append(headers, "Content-Type: application/json; charset=utf-8");
    headers = curl_slist_append(headers, "Expect:");
    headers = curl_slist_append(headers, "Accept: application/json");
    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, argv[2]);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "wecom-lua/0.1.0");
    for (i = 0; i < 50; i++) { /* warm up: connection, caches */
        b.len = 0;
        curl_easy_perform(easy);
    }
    t0 = now();
    for (i = 0; i < n; i++) {
        b.len = 0;
        if (curl_easy_perform(easy) != CURLE_OK) {
            fprintf(stderr, "request failed\n");
            return 1;
        }
    }
    printf("%.1f\n", (double)n / (now() - t0));
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    free(b.data);
    curl_global_cleanup();
    return 0;
}
