/* libFuzzer harness for the C core's encoder, decoder and callback
 * checks (`make fuzz`).
 *
 * The first byte picks the target:
 *   0xF0..0xFF: a callback (callback() below): the XML parser, the
 *         decryption of a signed Encrypt, of a plaintext the fuzzer chose
 *         (so padding, length and receiveid meet every value), or a
 *         seal/open round trip;
 *   other even: the reply decoder (core.reply_decoder over cjson.safe, as
 *         the library makes it) on the rest of the input, as a reply from a
 *         hostile server;
 *   other odd:  core.encode(endpoint, value), with the value built from the rest
 *         of the input by a small stack machine (tables, cycles, NaN,
 *         invalid UTF-8, the schemas' field names, deep nesting...).
 * Each must return normally (a result or nil + message); a crash, a
 * sanitizer report, a raised error or a round trip that changes the
 * message is a finding. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>

int luaopen_wecom_core(lua_State *L);

static lua_State *L;
static int core_ref;
static int box_ref;

/* The official test vectors' secrets (API.md, "Callbacks"). */
#define TOKEN "QDG6eK"
#define AES_KEY "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
#define RECEIVEID "wx5823bf96d3bd56c7"
static unsigned char aes_key[33]; /* EVP_DecodeBlock writes 33 bytes for 44 characters */

/* Field names of the schemas, so the machine reaches their rules. */
static const char *const names[] = {
    "calendar", "schedule", "summary", "color", "description", "shares", "userid", "readonly",
    "permission", "admins", "organizer", "is_public", "public_range", "userids", "partyids",
    "is_corp_calendar", "cal_id", "cal_id_list", "offset", "limit", "agentid", "schedule_id",
    "start_time", "end_time", "attendees", "reminders", "remind_time_diffs", "is_whole_day",
    "repeat_type", "repeat_day_of_week", "timezone", "op_mode", "op_start_time", "skip_attendees",
    "schedule_id_list", "exclude_time_list", "status", "set_as_default", "location", "is_repeat",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_wecom_core);
    lua_call(L, 0, 1);
    /* core.decode here stands for the decoder lua/wecom/request.lua makes */
    lua_getfield(L, -1, "reply_decoder");
    if (luaL_dostring(L, "local j = require('cjson.safe').new() j.decode_invalid_numbers(false) "
                         "j.decode_max_depth(100) return j.decode") != 0) {
        fprintf(stderr, "fuzz: can't load cjson.safe: %s\n", lua_tostring(L, -1));
        return 1;
    }
    lua_call(L, 1, 1);
    lua_setfield(L, -2, "decode");
    core_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, core_ref);
    lua_getfield(L, -1, "callback_box");
    lua_pushliteral(L, TOKEN);
    lua_pushliteral(L, AES_KEY);
    lua_pushliteral(L, RECEIVEID);
    lua_call(L, 3, 1);
    box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    EVP_DecodeBlock(aes_key, (const unsigned char *)AES_KEY "=", 44);
    return 0;
}

/* box:method(...) with the box at the bottom of what it pushes. */
static void box_method(const char *method) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, box_ref);
    lua_getfield(L, -1, method);
    lua_insert(L, -2);
}

/* Pushes the signature of (timestamp "1", nonce "n", the string at `enc`). */
static void sign_at(int enc) {
    box_method("sign");
    lua_pushliteral(L, "1");
    lua_pushliteral(L, "n");
    lua_pushvalue(L, enc);
    lua_call(L, 4, 1);
}

/* box:open(signature, "1", "n", encrypt) of the Encrypt at `enc`; returns
 * lua_pcall's code, leaving the results. */
static int open_at(int enc) {
    box_method("open");
    sign_at(enc);
    lua_pushliteral(L, "1");
    lua_pushliteral(L, "n");
    lua_pushvalue(L, enc);
    return lua_pcall(L, 5, 3, 0);
}

static int callback(int mode, const uint8_t *p, size_t n) {
    switch (mode) {
    case 0: /* the XML parser */
        lua_getfield(L, 1, "xml");
        lua_pushlstring(L, (const char *)p, n);
        return lua_pcall(L, 1, 2, 0);
    case 1: /* any string as Encrypt, properly signed */
        lua_pushlstring(L, (const char *)p, n);
        return open_at(lua_gettop(L));
    case 2: { /* the fuzzer's bytes as the plaintext: AES here, the checks there */
        static unsigned char plain[4096 + 32], cipher[4096 + 32], b64[(4096 + 32) / 3 * 4 + 8];
        size_t len = n > 4096 ? 4096 : n, padded = (len + 31) / 32 * 32;
        int out1 = 0, out2 = 0, rc, b64_len;
        EVP_CIPHER_CTX *ctx;
        if (padded == 0) padded = 32;
        memset(plain, 0, padded);
        memcpy(plain, p, len);
        ctx = EVP_CIPHER_CTX_new();
        if (ctx == NULL || !EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, aes_key, aes_key) ||
            !EVP_CIPHER_CTX_set_padding(ctx, 0) || !EVP_EncryptUpdate(ctx, cipher, &out1, plain, (int)padded) ||
            !EVP_EncryptFinal_ex(ctx, cipher + out1, &out2))
            __builtin_trap();
        EVP_CIPHER_CTX_free(ctx);
        b64_len = EVP_EncodeBlock(b64, cipher, (int)padded);
        lua_pushlstring(L, (const char *)b64, (size_t)b64_len);
        rc = open_at(lua_gettop(L));
        if (rc == 0 && lua_isstring(L, -3)) { /* it opened: the message goes on to the parser */
            lua_getfield(L, 1, "xml");
            lua_pushvalue(L, -4);
            rc = lua_pcall(L, 1, 2, 0);
        }
        return rc;
    }
    default: { /* seal, then open: the same message back */
        size_t got_len;
        const char *got;
        int rc;
        box_method("seal");
        lua_pushlstring(L, (const char *)p, n);
        lua_pushliteral(L, "1");
        lua_pushliteral(L, "n");
        rc = lua_pcall(L, 4, 3, 0);
        if (rc != 0) return rc;
        lua_pop(L, 2); /* the Encrypt stays on top */
        rc = open_at(lua_gettop(L));
        if (rc != 0) return rc;
        got = lua_tolstring(L, -3, &got_len);
        if (got == NULL || got_len != n || memcmp(got, p, n) != 0) {
            fprintf(stderr, "seal/open changed the message\n");
            __builtin_trap();
        }
        return 0;
    }
    }
}

typedef struct {
    const uint8_t *p;
    size_t n;
} input;

static int next_byte(input *in, uint8_t *b) {
    if (in->n == 0) return 0;
    *b = *in->p++;
    in->n--;
    return 1;
}

/* Builds one value on the stack from the input (always leaves exactly one
 * value more than it found). */
static void build(input *in, int base) {
    uint8_t op;
    luaL_checkstack(L, 210, "fuzz value"); /* the machine keeps at most 200 values */
    lua_newtable(L);
    while (next_byte(in, &op) && lua_gettop(L) < base + 200) {
        uint8_t b = 0;
        switch (op % 12) {
        case 0: lua_pushnil(L); break;
        case 1: next_byte(in, &b); lua_pushboolean(L, b & 1); break;
        case 2: {
            int64_t v = 0;
            size_t k = in->n < 8 ? in->n : 8;
            memcpy(&v, in->p, k);
            in->p += k, in->n -= k;
            lua_pushinteger(L, (lua_Integer)v);
            break;
        }
        case 3: {
            double d = 0;
            size_t k = in->n < 8 ? in->n : 8;
            memcpy(&d, in->p, k);
            in->p += k, in->n -= k;
            lua_pushnumber(L, d); /* NaN, infinities, huge values */
            break;
        }
        case 4: {
            size_t len;
            next_byte(in, &b);
            len = b < in->n ? b : in->n;
            lua_pushlstring(L, (const char *)in->p, len); /* any bytes: NUL, CR/LF, bad UTF-8 */
            in->p += len, in->n -= len;
            break;
        }
        case 5: lua_newtable(L); break;
        case 6: next_byte(in, &b); lua_pushstring(L, names[b % NNAMES]); break;
        case 7: /* t[k] = v for the topmost table under k, v */
            if (lua_gettop(L) >= base + 3 && lua_istable(L, -3) && !lua_isnil(L, -2)) {
                lua_Number d = lua_isnumber(L, -2) ? lua_tonumber(L, -2) : 0;
                if (d == d) lua_rawset(L, -3); else lua_pop(L, 2); /* NaN keys are not allowed */
            } else if (lua_gettop(L) > base + 1) {
                lua_pop(L, 1);
            }
            break;
        case 8: /* append the top value to the table below it */
            if (lua_gettop(L) >= base + 2 && lua_istable(L, -2)) {
                lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
            } else if (lua_gettop(L) > base + 1) {
                lua_pop(L, 1);
            }
            break;
        case 9: /* a cycle: the top table contains itself */
            if (lua_istable(L, -1)) {
                lua_pushstring(L, names[0]);
                lua_pushvalue(L, -2);
                lua_rawset(L, -3);
            }
            break;
        case 10: lua_pushvalue(L, -1); break;
        case 11: { /* nest: wrap the top value n levels deep */
            int i;
            next_byte(in, &b);
            for (i = 0; i < (b % 16) * 8; i++) { /* up to 120: past the 100 allowed */
                lua_newtable(L);
                lua_insert(L, -2);
                lua_rawseti(L, -2, 1);
            }
            break;
        }
        }
    }
    /* fold everything above the first table into it, so one value remains */
    while (lua_gettop(L) > base + 1) {
        if (lua_isnil(L, -1)) lua_pop(L, 1);
        else lua_rawseti(L, base + 1, (int)lua_rawlen(L, base + 1) + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in;
    int rc;
    if (size == 0) return 0;
    in.p = data + 1;
    in.n = size - 1;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, core_ref);
    if (data[0] >= 0xF0) {
        rc = callback(data[0] & 3, in.p, in.n);
    } else if (data[0] % 2 == 0) {
        lua_getfield(L, 1, "decode");
        lua_pushlstring(L, (const char *)in.p, in.n);
        rc = lua_pcall(L, 1, 2, 0);
    } else {
        lua_getfield(L, 1, "encode");
        lua_getfield(L, 1, "endpoints");
        lua_call(L, 0, 1);
        /* 0 = no schema, else one of the endpoint rows */
        if (data[0] / 2 % ((int)lua_rawlen(L, -1) + 1) == 0) lua_pushnil(L);
        else lua_pushinteger(L, (lua_Integer)(data[0] / 2 % (int)lua_rawlen(L, -1)) + 1);
        lua_remove(L, -2);
        build(&in, lua_gettop(L));
        rc = lua_pcall(L, 2, 3, 0);
    }
    if (rc != 0) {
        /* bad input is reported as nil + message; a raise is a bug */
        fprintf(stderr, "raised: %s\n", lua_tostring(L, -1));
        __builtin_trap();
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
