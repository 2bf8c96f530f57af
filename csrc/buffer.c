#include <stdlib.h>
#include <string.h>

#include "wecom.h"

int wc_buf_grow(wc_buf *b, size_t extra) {
    size_t need, cap;
    char *p;
    if (extra > (size_t)-1 - b->len) return 0;
    need = b->len + extra;
    if (need <= b->cap) return 1;
    cap = b->cap ? b->cap : 1024;
    while (cap < need) cap = (cap > (size_t)-1 / 2) ? need : cap * 2;
    p = realloc(b->data, cap);
    if (p == NULL) return 0;
    b->data = p;
    b->cap = cap;
    return 1;
}

void wc_buf_free(wc_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void wc_buf_trim(wc_buf *b, size_t keep) {
    b->len = 0;
    if (b->cap > keep) wc_buf_free(b);
}
