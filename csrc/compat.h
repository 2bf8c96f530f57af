/* Lua 5.1 / LuaJIT / 5.2..5.4 differences, under private names so they never
 * clash with what LuaJIT (or another module) already exports. */
#ifndef WECOM_COMPAT_H
#define WECOM_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502

static inline void wc_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

#define wc_rawlen(L, i) lua_objlen((L), (i))
#else

#define wc_setfuncs luaL_setfuncs
#define wc_rawlen(L, i) lua_rawlen((L), (i))

#if LUA_VERSION_NUM >= 503
#define WC_HAVE_INTEGERS 1
#endif

#endif

#endif
