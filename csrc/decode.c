/* Reply decoding. The JSON is parsed by a private lua-cjson instance that
 * the Lua side loads and configures (`cjson.safe`: bad JSON is nil, message;
 * a memory error still raises); C only looks at the first byte, restores
 * integers on Lua 5.3+ (cjson 2.1.0 gives floats, 1571274600.0) and checks
 * errcode. */
#include <math.h>

#include "wecom.h"

#ifdef WC_HAVE_INTEGERS
/* Only integers a double holds exactly (|d| <= 2^53) come back as Lua
 * integers; a larger one (a uint64 `sequence`) stays a float rather than
 * pretend to digits cjson has already lost. */
static void integerize(lua_State *L, int idx) {
    luaL_checkstack(L, 4, "reply nested too deeply");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int t = lua_type(L, -1);
        if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            lua_Number d = lua_tonumber(L, -1);
            if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
                lua_pushvalue(L, -2);
                lua_pushinteger(L, (lua_Integer)d);
                lua_rawset(L, idx); /* changing an existing key's value keeps lua_next valid */
            }
        } else if (t == LUA_TTABLE) {
            integerize(L, lua_gettop(L));
        }
        lua_pop(L, 1);
    }
}
#endif

/* decode_reply(json) -> reply, errcode | nil, message; upvalue 1 is the
 * JSON decoder. */
static int decode_reply(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer errcode = 0;
    lua_settop(L, 1);
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) s++, n--;
    if (n == 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "empty reply");
        return 2;
    }
    if (*s != '{') { /* `[]` and `{}` decode alike: look before cjson does */
        lua_pushnil(L);
        lua_pushliteral(L, "reply is not a JSON object");
        return 2;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1); /* the same string: no copy of a large reply */
    lua_call(L, 1, 2);
    if (lua_type(L, -2) != LUA_TTABLE) { /* nil, message from cjson.safe */
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pushnil(L);
            lua_pushliteral(L, "reply is not a JSON object");
        }
        return 2;
    }
    lua_pop(L, 1);
#ifdef WC_HAVE_INTEGERS
    integerize(L, lua_gettop(L));
#endif
    lua_pushliteral(L, "errcode");
    lua_rawget(L, -2);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_Number d = lua_tonumber(L, -1);
        if (!(d == floor(d) && fabs(d) <= 2147483647.0)) goto bad_errcode;
        errcode = (lua_Integer)d;
    } else if (!lua_isnil(L, -1)) {
        goto bad_errcode;
    }
    lua_pop(L, 1);
    lua_pushinteger(L, errcode);
    return 2;
bad_errcode:
    lua_pushnil(L);
    lua_pushliteral(L, "reply has an errcode that is not an integer");
    return 2;
}

/* core.reply_decoder(decode) -> decode_reply, where decode(json) returns a
 * table or nil, message (cjson.safe's decode). */
int wc_reply_decoder(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushcclosure(L, decode_reply, 1);
    return 1;
}
