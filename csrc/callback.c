/* The cryptography of WeCom's callbacks (API.md, "Callbacks"), with
 * libcrypto (OpenSSL 3's EVP):
 *
 *   core.callback_box(token, encoding_aes_key, receiveid)
 *       -> box | nil, field, message
 *   box:sign(timestamp, nonce, encrypt) -> msg_signature (40 hex digits)
 *   box:open(msg_signature, timestamp, nonce, encrypt)
 *       -> message | nil, reason, message    reason: "signature", "decrypt", "receiveid"
 *   box:seal(message, timestamp [, nonce]) -> encrypt, msg_signature, nonce
 *
 * A box keeps the token, the AES key and the receiveid in its userdata, out
 * of reach of anything that lists Lua tables, and wipes them when collected.
 * Scratch memory is a userdata pushed before any OpenSSL object is made, and
 * every OpenSSL object is freed before the next Lua call, so a raise (out of
 * memory) leaks nothing and a finalizer that runs in between finds no shared
 * state to disturb. */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "wecom.h"

#define BOX_MT "wecom.core.callback_box"
#define KEY_CHARS 43    /* an EncodingAESKey: base64 of 32 bytes without its "=" */
#define KEY_BYTES 32    /* AES-256 */
#define IV_BYTES 16     /* the first 16 bytes of the key */
#define PAD_BLOCK 32    /* WeCom pads to 32 bytes, not to AES's 16 */
#define RANDOM_BYTES 16 /* the plaintext starts with 16 random bytes ... */
#define HEAD_BYTES 20   /* ... and a 4-byte big-endian length */
#define SIG_HEX 40      /* SHA-1 in hex */
#define MAX_SECRET 1024 /* longest token or receiveid we keep */

typedef struct {
    unsigned char key[KEY_BYTES];
    size_t token_len, receiveid_len;
    char data[]; /* the token, then the receiveid */
} wc_box;

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64 (RFC 4648 section 4, padded): a length that is a multiple
 * of 4, only the alphabet, "=" only as the last one or two characters and,
 * with `canonical`, zero bits after the last byte, so every byte string has
 * exactly one accepted encoding. (An EncodingAESKey is 43 random characters:
 * its last one carries 2 bits that are not part of the key.) out has room
 * for n / 4 * 3 bytes. Returns 0 when s is not such an encoding. */
static int b64_decode(const char *s, size_t n, int canonical, unsigned char *out, size_t *out_len) {
    size_t i, o = 0, pad = 0;
    if (n % 4 != 0) return 0;
    if (n >= 1 && s[n - 1] == '=') pad++;
    if (n >= 2 && s[n - 2] == '=') pad++;
    for (i = 0; i < n; i += 4) {
        int v[4], k, last = (i + 4 == n);
        for (k = 0; k < 4; k++) {
            if (last && k >= 4 - (int)pad) v[k] = 0;
            else if ((v[k] = b64_value((unsigned char)s[i + k])) < 0) return 0;
        }
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (last && pad == 2) {
            if (canonical && (v[1] & 0x0F)) return 0;
            break;
        }
        out[o++] = (unsigned char)((v[1] & 0x0F) << 4 | v[2] >> 2);
        if (last && pad == 1) {
            if (canonical && (v[2] & 0x03)) return 0;
            break;
        }
        out[o++] = (unsigned char)((v[2] & 0x03) << 6 | v[3]);
    }
    *out_len = o;
    return 1;
}

/* out has room for (n + 2) / 3 * 4 characters; returns how many it wrote. */
static size_t b64_encode(const unsigned char *p, size_t n, char *out) {
    size_t i, o = 0;
    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

typedef struct {
    const char *p;
    size_t n;
} part;

static int part_less(const part *a, const part *b) {
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->p, b->p, n);
    return c < 0 || (c == 0 && a->n < b->n);
}

/* msg_signature = hex(sha1(the four strings sorted bytewise, concatenated)). */
static int signature(const wc_box *b, const char *ts, size_t ts_len, const char *nonce, size_t nonce_len,
                     const char *enc, size_t enc_len, char hex[SIG_HEX + 1]) {
    part parts[4];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx;
    int i, j, ok;
    parts[0].p = b->data, parts[0].n = b->token_len;
    parts[1].p = ts, parts[1].n = ts_len;
    parts[2].p = nonce, parts[2].n = nonce_len;
    parts[3].p = enc, parts[3].n = enc_len;
    for (i = 1; i < 4; i++) /* insertion sort of four */
        for (j = i; j > 0 && part_less(&parts[j], &parts[j - 1]); j--) {
            part t = parts[j];
            parts[j] = parts[j - 1];
            parts[j - 1] = t;
        }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return 0;
    ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    for (i = 0; ok && i < 4; i++) ok = EVP_DigestUpdate(ctx, parts[i].p, parts[i].n);
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) && md_len * 2 == SIG_HEX;
    EVP_MD_CTX_free(ctx);
    if (!ok) return 0;
    for (i = 0; i < (int)md_len; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[SIG_HEX] = '\0';
    return 1;
}

/* AES-256-CBC over whole blocks, OpenSSL's padding off: WeCom's 32-byte
 * padding is added and checked by hand. Returns 0 on failure. */
static int aes(const wc_box *b, int encrypt, const unsigned char *in, size_t n, unsigned char *out) {
    EVP_CIPHER_CTX *ctx;
    int len1 = 0, len2 = 0, ok;
    if (n > (size_t)INT32_MAX) return 0;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) return 0;
    ok = EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, b->key, b->key, encrypt) &&
         EVP_CIPHER_CTX_set_padding(ctx, 0) && EVP_CipherUpdate(ctx, out, &len1, in, (int)n) &&
         EVP_CipherFinal_ex(ctx, out + len1, &len2) && (size_t)len1 + (size_t)len2 == n;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static wc_box *check_box(lua_State *L) { return (wc_box *)luaL_checkudata(L, 1, BOX_MT); }

static int fail(lua_State *L, const char *reason, const char *message) {
    lua_pushnil(L);
    lua_pushstring(L, reason);
    lua_pushstring(L, message);
    return 3;
}

/* core.callback_box(token, encoding_aes_key, receiveid) */
static int box_new(lua_State *L) {
    size_t token_len, key_len, rid_len, raw_len = 0;
    const char *token = luaL_checklstring(L, 1, &token_len);
    const char *key = luaL_checklstring(L, 2, &key_len);
    const char *rid = luaL_checklstring(L, 3, &rid_len);
    char padded[KEY_CHARS + 1];
    unsigned char raw[(KEY_CHARS + 1) / 4 * 3];
    wc_box *b;
    if (token_len == 0 || token_len > MAX_SECRET) {
        lua_pushnil(L);
        lua_pushliteral(L, "token");
        lua_pushfstring(L, "expected 1..%d bytes", MAX_SECRET);
        return 3;
    }
    if (rid_len == 0 || rid_len > MAX_SECRET) {
        lua_pushnil(L);
        lua_pushliteral(L, "receiveid");
        lua_pushfstring(L, "expected 1..%d bytes", MAX_SECRET);
        return 3;
    }
    memcpy(padded, key, key_len < KEY_CHARS ? key_len : KEY_CHARS);
    padded[KEY_CHARS] = '=';
    if (key_len != KEY_CHARS || !b64_decode(padded, sizeof padded, 0, raw, &raw_len) || raw_len != KEY_BYTES) {
        OPENSSL_cleanse(padded, sizeof padded);
        OPENSSL_cleanse(raw, sizeof raw);
        lua_pushnil(L);
        lua_pushliteral(L, "encoding_aes_key");
        lua_pushstring(L, key_len != KEY_CHARS ? "expected 43 characters"
                                               : "expected 43 characters of base64 (A-Z a-z 0-9 + /)");
        return 3;
    }
    b = (wc_box *)lua_newuserdata(L, sizeof *b + token_len + rid_len);
    memcpy(b->key, raw, KEY_BYTES);
    OPENSSL_cleanse(padded, sizeof padded);
    OPENSSL_cleanse(raw, sizeof raw);
    b->token_len = token_len;
    b->receiveid_len = rid_len;
    memcpy(b->data, token, token_len);
    memcpy(b->data + token_len, rid, rid_len);
    luaL_getmetatable(L, BOX_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int box_gc(lua_State *L) {
    wc_box *b = (wc_box *)luaL_checkudata(L, 1, BOX_MT);
    OPENSSL_cleanse(b, sizeof *b + b->token_len + b->receiveid_len);
    return 0;
}

static int box_tostring(lua_State *L) {
    check_box(L);
    lua_pushliteral(L, "wecom.core.callback_box");
    return 1;
}

/* box:sign(timestamp, nonce, encrypt) */
static int box_sign(lua_State *L) {
    const wc_box *b = check_box(L);
    size_t ts_len, nonce_len, enc_len;
    const char *ts = luaL_checklstring(L, 2, &ts_len);
    const char *nonce = luaL_checklstring(L, 3, &nonce_len);
    const char *enc = luaL_checklstring(L, 4, &enc_len);
    char hex[SIG_HEX + 1];
    if (!signature(b, ts, ts_len, nonce, nonce_len, enc, enc_len, hex)) return luaL_error(L, "SHA-1 failed");
    lua_pushlstring(L, hex, SIG_HEX);
    return 1;
}

/* box:open(msg_signature, timestamp, nonce, encrypt): the signature first
 * (nothing is decrypted for a sender without the token), then base64, AES,
 * the padding, the length and the receiveid. */
static int box_open(lua_State *L) {
    const wc_box *b = check_box(L);
    size_t sig_len, ts_len, nonce_len, enc_len, cipher_len = 0, pad, body, msg_len, i;
    const char *sig = luaL_checklstring(L, 2, &sig_len);
    const char *ts = luaL_checklstring(L, 3, &ts_len);
    const char *nonce = luaL_checklstring(L, 4, &nonce_len);
    const char *enc = luaL_checklstring(L, 5, &enc_len);
    char hex[SIG_HEX + 1];
    unsigned char *cipher, *plain, bad;
    if (!signature(b, ts, ts_len, nonce, nonce_len, enc, enc_len, hex)) return fail(L, "signature", "SHA-1 failed");
    if (sig_len != SIG_HEX || CRYPTO_memcmp(hex, sig, SIG_HEX) != 0)
        return fail(L, "signature", "msg_signature does not match");
    if (enc_len > WC_CALLBACK_MAX_BYTES) return fail(L, "decrypt", "Encrypt is too long");
    cipher = (unsigned char *)lua_newuserdata(L, 2 * (enc_len / 4 * 3) + 1);
    plain = cipher + enc_len / 4 * 3;
    if (!b64_decode(enc, enc_len, 1, cipher, &cipher_len)) return fail(L, "decrypt", "Encrypt is not base64");
    if (cipher_len == 0 || cipher_len % PAD_BLOCK != 0)
        return fail(L, "decrypt", "Encrypt is not a whole number of 32-byte blocks");
    if (!aes(b, 0, cipher, cipher_len, plain)) return fail(L, "decrypt", "AES-256-CBC failed");
    pad = plain[cipher_len - 1];
    bad = (unsigned char)(pad < 1 || pad > PAD_BLOCK);
    for (i = 1; !bad && i <= pad; i++) bad |= (unsigned char)(plain[cipher_len - i] != pad);
    if (bad) {
        OPENSSL_cleanse(plain, cipher_len);
        return fail(L, "decrypt", "bad padding");
    }
    body = cipher_len - pad;
    if (body < HEAD_BYTES) {
        OPENSSL_cleanse(plain, cipher_len);
        return fail(L, "decrypt", "too short for its header");
    }
    msg_len = (size_t)plain[16] << 24 | (size_t)plain[17] << 16 | (size_t)plain[18] << 8 | plain[19];
    if (msg_len > body - HEAD_BYTES) {
        OPENSSL_cleanse(plain, cipher_len);
        return fail(L, "decrypt", "message length past the end");
    }
    if (body - HEAD_BYTES - msg_len != b->receiveid_len ||
        memcmp(plain + HEAD_BYTES + msg_len, b->data + b->token_len, b->receiveid_len) != 0) {
        OPENSSL_cleanse(plain, cipher_len);
        return fail(L, "receiveid", "the message is for another receiveid");
    }
    lua_pushlstring(L, (const char *)plain + HEAD_BYTES, msg_len);
    OPENSSL_cleanse(plain, cipher_len);
    return 1;
}

/* box:seal(message, timestamp [, nonce]): 16 random bytes, the length, the
 * message, the receiveid, 32-byte padding; AES; base64; signed. Without a
 * nonce, ten random digits. */
static int box_seal(lua_State *L) {
    const wc_box *b = check_box(L);
    size_t msg_len, ts_len, nonce_len = 0, plain_len, padded, enc_len;
    const char *msg = luaL_checklstring(L, 2, &msg_len);
    const char *ts = luaL_checklstring(L, 3, &ts_len);
    const char *nonce = luaL_optlstring(L, 4, NULL, &nonce_len);
    unsigned char *plain, *cipher, rnd[10];
    char *enc, digits[sizeof rnd], hex[SIG_HEX + 1];
    if (msg_len > WC_CALLBACK_MAX_BYTES) return luaL_argerror(L, 2, "message over the size limit");
    plain_len = HEAD_BYTES + msg_len + b->receiveid_len;
    padded = (plain_len / PAD_BLOCK + 1) * PAD_BLOCK;
    enc_len = (padded + 2) / 3 * 4;
    plain = (unsigned char *)lua_newuserdata(L, 2 * padded + enc_len);
    cipher = plain + padded;
    enc = (char *)cipher + padded;
    if (RAND_bytes(plain, RANDOM_BYTES) != 1) return fail(L, "random", "RAND_bytes failed");
    if (nonce == NULL) {
        size_t i;
        if (RAND_bytes(rnd, sizeof rnd) != 1) return fail(L, "random", "RAND_bytes failed");
        for (i = 0; i < sizeof rnd; i++) digits[i] = (char)('0' + rnd[i] % 10);
        nonce = digits;
        nonce_len = sizeof digits;
    }
    plain[16] = (unsigned char)(msg_len >> 24);
    plain[17] = (unsigned char)(msg_len >> 16);
    plain[18] = (unsigned char)(msg_len >> 8);
    plain[19] = (unsigned char)msg_len;
    memcpy(plain + HEAD_BYTES, msg, msg_len);
    memcpy(plain + HEAD_BYTES + msg_len, b->data + b->token_len, b->receiveid_len);
    memset(plain + plain_len, (int)(padded - plain_len), padded - plain_len);
    if (!aes(b, 1, plain, padded, cipher)) {
        OPENSSL_cleanse(plain, padded);
        return fail(L, "encrypt", "AES-256-CBC failed");
    }
    OPENSSL_cleanse(plain, padded);
    enc_len = b64_encode(cipher, padded, enc);
    if (!signature(b, ts, ts_len, nonce, nonce_len, enc, enc_len, hex)) return fail(L, "signature", "SHA-1 failed");
    lua_pushlstring(L, enc, enc_len);
    lua_pushlstring(L, hex, SIG_HEX);
    lua_pushlstring(L, nonce, nonce_len);
    return 3;
}

void wc_callback_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"sign", box_sign},
        {"open", box_open},
        {"seal", box_seal},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, BOX_MT)) {
        lua_newtable(L);
        wc_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, box_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, BOX_MT);
        lua_setfield(L, -2, "__name");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, box_new);
    lua_setfield(L, -2, "callback_box");
    lua_pushinteger(L, WC_CALLBACK_MAX_BYTES);
    lua_setfield(L, -2, "CALLBACK_MAX_BYTES");
}
