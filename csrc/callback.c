/* The cryptography of WeCom's callbacks (API.md, "Callbacks"), with
 * libcrypto (OpenSSL 3's EVP):
 *
 *   core.callback_box(token, encoding_aes_key, receiveid)
 *       -> box | nil, field, message
 *   box:sign(timestamp, nonce, encrypt) -> msg_signature (40 hex digits)
 *   box:open(msg_signature, timestamp, nonce, encrypt [, as_xml])
 *       -> message, id | nil, reason, message    reason: "signature", "decrypt",
 *       "receiveid" (and "xml" with as_xml). id: hex SHA-256 of the token,
 *       the receiveid and the message, which names the message (and the app)
 *       in the seen store. With as_xml, the message comes parsed (core.xml):
 *       the plaintext never becomes a Lua string. (LuaJIT hashes long strings
 *       by a few sampled bytes, so thousands of similar events, interned,
 *       would share one hash chain.)
 *   box:seal(message, timestamp [, nonce]) -> encrypt, msg_signature, nonce
 *
 * A box keeps the token, the AES key and the receiveid in its userdata, out
 * of reach of anything that lists Lua tables, and wipes them when collected.
 * It also owns its OpenSSL objects (the fetched algorithms, a digest and two
 * cipher contexts keyed once), freed by its __gc, so nothing leaks when a
 * Lua call raises. Each use of a context runs from init to final without a
 * Lua call in between, so a finalizer that runs during a call (and uses the
 * same box) finds the contexts idle. Scratch memory is a userdata. */
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
    EVP_CIPHER *aes;
    EVP_MD *sha1, *sha256;
    EVP_CIPHER_CTX *decrypt, *encrypt; /* keyed at creation */
    EVP_MD_CTX *md;
    size_t token_len, receiveid_len;
    char data[]; /* the token, then the receiveid */
} wc_box;

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static const signed char B64_VALUE[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/* Strict base64 (RFC 4648 section 4, padded): a length that is a multiple
 * of 4, only the alphabet, "=" only as the last one or two characters and,
 * with `canonical`, zero bits after the last byte, so every byte string has
 * exactly one accepted encoding. (An EncodingAESKey is 43 random characters:
 * its last one carries 2 bits that are not part of the key.) out has room
 * for n / 4 * 3 bytes. Returns 0 when s is not such an encoding. */
static int b64_decode(const char *s, size_t n, int canonical, unsigned char *out, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i, o = 0, pad = 0, full;
    int a, b, c;
    if (n % 4 != 0) return 0;
    if (n >= 1 && u[n - 1] == '=') pad++;
    if (n >= 2 && u[n - 2] == '=') pad++;
    full = pad ? n - 4 : n; /* groups without "=" */
    for (i = 0; i < full; i += 4) {
        int d = B64_VALUE[u[i + 3]];
        a = B64_VALUE[u[i]], b = B64_VALUE[u[i + 1]], c = B64_VALUE[u[i + 2]];
        if ((a | b | c | d) < 0) return 0;
        out[o++] = (unsigned char)(a << 2 | b >> 4);
        out[o++] = (unsigned char)((b & 0x0F) << 4 | c >> 2);
        out[o++] = (unsigned char)((c & 0x03) << 6 | d);
    }
    if (pad) {
        a = B64_VALUE[u[i]], b = B64_VALUE[u[i + 1]];
        c = pad == 2 ? 0 : B64_VALUE[u[i + 2]];
        if ((a | b | c) < 0) return 0;
        out[o++] = (unsigned char)(a << 2 | b >> 4);
        if (pad == 2) {
            if (canonical && (b & 0x0F)) return 0;
        } else {
            if (canonical && (c & 0x03)) return 0;
            out[o++] = (unsigned char)((b & 0x0F) << 4 | c >> 2);
        }
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

static void to_hex(const unsigned char *md, unsigned int n, char *hex) {
    static const char digits[] = "0123456789abcdef";
    unsigned int i;
    for (i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
}

/* The digest of `n` parts, in hex (2 * its size characters). */
static int digest(const wc_box *b, const EVP_MD *alg, const part *parts, int n, char *hex) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int i, ok = EVP_DigestInit_ex(b->md, alg, NULL);
    for (i = 0; ok && i < n; i++) ok = EVP_DigestUpdate(b->md, parts[i].p, parts[i].n);
    ok = ok && EVP_DigestFinal_ex(b->md, md, &md_len);
    if (ok) to_hex(md, md_len, hex);
    OPENSSL_cleanse(md, sizeof md);
    return ok;
}

/* msg_signature = hex(sha1(the four strings sorted bytewise, concatenated)). */
static int signature(const wc_box *b, const char *ts, size_t ts_len, const char *nonce, size_t nonce_len,
                     const char *enc, size_t enc_len, char hex[SIG_HEX + 1]) {
    part parts[4];
    int i, j;
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
    if (!digest(b, b->sha1, parts, 4, hex)) return 0;
    hex[SIG_HEX] = '\0';
    return 1;
}

/* AES-256-CBC over whole blocks with the box's keyed context, the IV reset
 * and OpenSSL's padding off: WeCom's 32-byte padding is added and checked
 * by hand. Returns 0 on failure. */
static int aes(const wc_box *b, int encrypt, const unsigned char *in, size_t n, unsigned char *out) {
    EVP_CIPHER_CTX *ctx = encrypt ? b->encrypt : b->decrypt;
    int len1 = 0, len2 = 0;
    if (n > (size_t)INT32_MAX) return 0;
    return EVP_CipherInit_ex(ctx, NULL, NULL, NULL, b->key, encrypt) && EVP_CIPHER_CTX_set_padding(ctx, 0) &&
           EVP_CipherUpdate(ctx, out, &len1, in, (int)n) && EVP_CipherFinal_ex(ctx, out + len1, &len2) &&
           (size_t)len1 + (size_t)len2 == n;
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
    memset(b, 0, sizeof *b);
    memcpy(b->key, raw, KEY_BYTES);
    OPENSSL_cleanse(padded, sizeof padded);
    OPENSSL_cleanse(raw, sizeof raw);
    b->token_len = token_len;
    b->receiveid_len = rid_len;
    memcpy(b->data, token, token_len);
    memcpy(b->data + token_len, rid, rid_len);
    /* owned from here on: __gc frees what was made even if the rest fails */
    luaL_getmetatable(L, BOX_MT);
    lua_setmetatable(L, -2);
    b->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    b->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    b->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    b->decrypt = EVP_CIPHER_CTX_new();
    b->encrypt = EVP_CIPHER_CTX_new();
    b->md = EVP_MD_CTX_new();
    if (b->aes == NULL || b->sha1 == NULL || b->sha256 == NULL || b->decrypt == NULL || b->encrypt == NULL ||
        b->md == NULL || !EVP_CipherInit_ex(b->decrypt, b->aes, NULL, b->key, b->key, 0) ||
        !EVP_CipherInit_ex(b->encrypt, b->aes, NULL, b->key, b->key, 1))
        return luaL_error(L, "libcrypto: AES-256-CBC, SHA-1 or SHA-256 unavailable");
    return 1;
}

static int box_gc(lua_State *L) {
    wc_box *b = (wc_box *)luaL_checkudata(L, 1, BOX_MT);
    EVP_CIPHER_CTX_free(b->decrypt);
    EVP_CIPHER_CTX_free(b->encrypt);
    EVP_MD_CTX_free(b->md);
    EVP_CIPHER_free(b->aes);
    EVP_MD_free(b->sha1);
    EVP_MD_free(b->sha256);
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
    int as_xml = lua_toboolean(L, 6);
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
    {
        /* the message's id: the same event re-encrypted has the same one */
        part parts[5];
        char id[2 * 32];
        parts[0].p = b->data, parts[0].n = b->token_len;
        parts[1].p = "\0", parts[1].n = 1;
        parts[2].p = b->data + b->token_len, parts[2].n = b->receiveid_len;
        parts[3].p = "\0", parts[3].n = 1;
        parts[4].p = (const char *)plain + HEAD_BYTES, parts[4].n = msg_len;
        if (!digest(b, b->sha256, parts, 5, id)) {
            OPENSSL_cleanse(plain, cipher_len);
            return fail(L, "decrypt", "SHA-256 failed");
        }
        if (as_xml) {
            char err[128];
            int ok = wc_xml_parse(L, (const char *)plain + HEAD_BYTES, msg_len, err, sizeof err);
            OPENSSL_cleanse(plain, cipher_len);
            if (!ok) return fail(L, "xml", err);
        } else {
            lua_pushlstring(L, (const char *)plain + HEAD_BYTES, msg_len);
            OPENSSL_cleanse(plain, cipher_len);
        }
        lua_pushlstring(L, id, sizeof id);
    }
    return 2;
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
