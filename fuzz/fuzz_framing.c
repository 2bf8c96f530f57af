/* libFuzzer harness for the reply framing of the libcurl session
 * (csrc/framing.c): the input is a reply as a hostile server would send it,
 * its head lines handed over one by one as libcurl does, then its body.
 * Besides the sanitizers, it checks that the body decodes the same whether
 * it arrives at once or one byte at a time, and never past the size limit. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "wecom.h"

#define MAX_BODY 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds the body after the head at once (step 0) or in pieces of `step`
 * bytes; returns the last result and leaves the decoded bytes in *out. */
static int body(const wc_framing *head, const char *p, size_t n, size_t step, wc_buf *out) {
    wc_framing f = *head;
    size_t at = 0;
    int rc = WC_FRAME_OK;
    if (step == 0) step = n ? n : 1;
    while (at < n && rc == WC_FRAME_OK) {
        size_t k = n - at < step ? n - at : step;
        rc = wc_framing_body(&f, out, MAX_BODY, p + at, k);
        at += k;
    }
    if (rc == WC_FRAME_OK) rc = wc_framing_end(&f);
    if (out->len > MAX_BODY) __builtin_trap();
    if (rc == WC_FRAME_BAD && f.error == NULL) __builtin_trap();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    wc_framing f;
    wc_buf whole = { NULL, 0, 0 }, bytes = { NULL, 0, 0 };
    int rc1, rc2;
    wc_framing_reset(&f);
    /* the head: lines up to and with their LF, until the final head ends */
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        size_t n = lf ? (size_t)(lf - p) + 1 : (size_t)(end - p);
        int rc = wc_framing_head_line(&f, p, n);
        p += n;
        if (rc != WC_FRAME_OK) {
            if (rc == WC_FRAME_BAD && f.error == NULL) __builtin_trap();
            return 0;
        }
        if (!f.in_head && f.head.status >= 200) break;
    }
    rc1 = body(&f, p, (size_t)(end - p), 0, &whole);
    rc2 = body(&f, p, (size_t)(end - p), 1, &bytes);
    /* a refusal may come earlier byte by byte (a chunk size checked before
     * the data), but a decoded body is the same either way */
    if ((rc1 == WC_FRAME_OK) != (rc2 == WC_FRAME_OK)) __builtin_trap();
    if (rc1 == WC_FRAME_OK && (whole.len != bytes.len || (whole.len && memcmp(whole.data, bytes.data, whole.len))))
        __builtin_trap();
    wc_buf_free(&whole);
    wc_buf_free(&bytes);
    return 0;
}
