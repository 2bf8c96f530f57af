/* The endpoint table: one row per endpoint, each with the schema of its
 * request body (limits from API.md). The Lua client's methods are generated
 * from this table, so a new endpoint is a row here plus its schema. */
#include <string.h>

#include "wecom.h"

#define F_STR(n, fl, lo, hi) { .name = (n), .type = WC_STRING, .flags = (fl), .min = (lo), .max = (hi) }
#define F_ID(n, fl) F_STR(n, (fl) | WC_BYTES, 1, 64)
#define F_COLOR(n, fl) { .name = (n), .type = WC_COLOR, .flags = (fl) }
#define F_INT(n, fl, lo, hi) { .name = (n), .type = WC_INT, .flags = (fl), .min = (lo), .max = (hi) }
#define F_ENUM(n, fl, set) { .name = (n), .type = WC_INT, .flags = (fl), .one_of = (set) }
#define F_FLAG(n) { .name = (n), .type = WC_FLAG, .min = 0, .max = 1 }
#define F_OBJ(n, fl, fs, chk) { .name = (n), .type = WC_OBJECT, .flags = (fl), .fields = (fs), .check = (chk) }
#define F_LIST(n, fl, lo, hi, el) \
    { .name = (n), .type = WC_ARRAY, .flags = (fl), .min = (lo), .max = (hi), .elem = (el) }
#define F_REFUSED(n, why) { .name = (n), .type = WC_ANY, .flags = WC_READONLY, .note = (why) }
#define F_END { .name = NULL }

#define UINT32_MAX_ 4294967295LL
#define INT32_MAX_ 2147483647LL

/* ---- helpers for cross-field rules ------------------------------------- */

/* Pushes t[name] without metamethods and returns its type. */
static int raw_field(lua_State *L, int t, const char *name) {
    lua_pushstring(L, name);
    lua_rawget(L, t);
    return lua_type(L, -1);
}

/* 1 if the flag at the top of the stack is set (1 or true). */
static int flag_is_set(lua_State *L) {
    if (lua_type(L, -1) == LUA_TBOOLEAN) return lua_toboolean(L, -1);
    return lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == 1;
}

/* 1 if `userid` (a string at stack index u) appears as `key` of an entry of
 * the list at stack index list (entries may be tables with `key`, or, with
 * key NULL, plain strings). */
static int list_has_userid(lua_State *L, int list, const char *key, int u) {
    size_t i, n = (lua_type(L, list) == LUA_TTABLE) ? wc_rawlen(L, list) : 0;
    for (i = 1; i <= n; i++) {
        int found;
        lua_rawgeti(L, list, (lua_Integer)i);
        if (key != NULL) {
            if (lua_type(L, -1) != LUA_TTABLE) {
                lua_pop(L, 1);
                continue;
            }
            raw_field(L, lua_gettop(L), key);
            found = lua_rawequal(L, -1, u);
            lua_pop(L, 2);
        } else {
            found = lua_rawequal(L, -1, u);
            lua_pop(L, 1);
        }
        if (found) return 1;
    }
    return 0;
}

/* Every entry of the list `sub` of object idx must be a member of its list
 * `super` (of tables keyed by `key`, or of strings when key is NULL). */
static int subset_rule(wc_enc *e, int idx, const char *sub, const char *super, const char *key,
                       const char *why) {
    lua_State *L = e->L;
    int top = lua_gettop(L), subl, superl, ok = 1;
    size_t i, n;
    if (raw_field(L, idx, sub) != LUA_TTABLE) {
        lua_settop(L, top);
        return 1;
    }
    subl = lua_gettop(L);
    raw_field(L, idx, super);
    superl = lua_gettop(L);
    n = wc_rawlen(L, subl);
    for (i = 1; i <= n && ok; i++) {
        lua_rawgeti(L, subl, (lua_Integer)i);
        if (!list_has_userid(L, superl, key, lua_gettop(L))) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            wc_enc_push_key(e, sub);
            wc_enc_push_index(e, (lua_Integer)i);
            ok = wc_enc_fail(e, "\"%.*s\" %s", (int)(len > 64 ? 64 : len), s, why);
            wc_enc_pop(e);
            wc_enc_pop(e);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    return ok;
}

static int require_field(wc_enc *e, int idx, const char *name, const char *why) {
    int missing = raw_field(e->L, idx, name) == LUA_TNIL;
    lua_pop(e->L, 1);
    if (!missing) return 1;
    wc_enc_push_key(e, name);
    wc_enc_fail(e, "%s", why);
    wc_enc_pop(e);
    return 0;
}

/* ---- calendar ---------------------------------------------------------- */

static int calendar_add_rules(wc_enc *e, int idx) {
    int corp;
    raw_field(e->L, idx, "is_corp_calendar");
    corp = flag_is_set(e->L);
    lua_pop(e->L, 1);
    if (corp) {
        /* all-staff calendars take no colour but need a public range */
        if (!require_field(e, idx, "public_range", "required for an all-staff calendar (is_corp_calendar = 1)"))
            return 0;
    } else if (!require_field(e, idx, "color", "required")) {
        return 0;
    }
    return subset_rule(e, idx, "admins", "shares", "userid", "must also be in shares");
}

static int calendar_update_rules(wc_enc *e, int idx) {
    return subset_rule(e, idx, "admins", "shares", "userid", "must also be in shares");
}

static const lua_Integer share_permissions[] = {1, 3, WC_END};
static const wc_field userid_elem = { .type = WC_STRING, .flags = WC_BYTES, .min = 1, .max = 64 };
static const wc_field partyid_elem = { .type = WC_INT, .min = 1, .max = UINT32_MAX_ };

static const wc_field share_fields[] = {
    F_ID("userid", WC_REQUIRED),
    F_FLAG("readonly"),
    F_ENUM("permission", 0, share_permissions),
    F_END,
};
static const wc_field share_elem = { .type = WC_OBJECT, .fields = share_fields };

static const wc_field public_range_fields[] = {
    F_LIST("userids", 0, 0, 1000, &userid_elem),
    F_LIST("partyids", 0, 0, 100, &partyid_elem),
    F_END,
};

#define CALENDAR_COMMON_FIELDS                                  \
    F_FLAG("readonly"),                                         \
    F_FLAG("set_as_default"),                                   \
    F_STR("summary", WC_REQUIRED, 1, 128),                      \
    F_COLOR("color", 0),                                        \
    F_STR("description", 0, 0, 512),                            \
    F_LIST("shares", 0, 0, 2000, &share_elem),                  \
    F_LIST("admins", 0, 0, 3, &userid_elem),                    \
    F_OBJ("public_range", 0, public_range_fields, NULL)

static const wc_field calendar_add_fields[] = {
    F_ID("organizer", 0),
    F_FLAG("is_public"),
    F_FLAG("is_corp_calendar"),
    CALENDAR_COMMON_FIELDS,
    F_END,
};

static const wc_field calendar_update_fields[] = {
    F_ID("cal_id", WC_REQUIRED),
    F_REFUSED("organizer", "can't be updated: the organizer is fixed when the calendar is created"),
    F_REFUSED("is_public", "can't be updated: set it when the calendar is created"),
    F_REFUSED("is_corp_calendar", "can't be updated: set it when the calendar is created"),
    CALENDAR_COMMON_FIELDS,
    F_END,
};

static const wc_field calendar_add_body[] = {
    F_OBJ("calendar", WC_REQUIRED, calendar_add_fields, calendar_add_rules),
    F_INT("agentid", 0, 0, UINT32_MAX_),
    F_END,
};

static const wc_field calendar_update_body[] = {
    F_OBJ("calendar", WC_REQUIRED, calendar_update_fields, calendar_update_rules),
    F_FLAG("skip_public_range"),
    F_END,
};

static const wc_field calendar_get_body[] = {
    F_LIST("cal_id_list", WC_REQUIRED, 1, 1000, &userid_elem),
    F_END,
};

static const wc_field calendar_del_body[] = {
    F_ID("cal_id", WC_REQUIRED),
    F_END,
};

/* ---- schedule ---------------------------------------------------------- */

static const wc_field schedule_get_by_calendar_body[] = {
    F_ID("cal_id", WC_REQUIRED),
    F_INT("offset", 0, 0, INT32_MAX_),
    F_INT("limit", 0, 1, 1000),
    F_END,
};

/* ---- the table ----------------------------------------------------------- */

const wc_endpoint wc_endpoints[] = {
    {"calendar_add", "oa/calendar/add", calendar_add_body, 0},
    {"calendar_update", "oa/calendar/update", calendar_update_body, 1},
    {"calendar_get", "oa/calendar/get", calendar_get_body, 1},
    {"calendar_del", "oa/calendar/del", calendar_del_body, 1},
    {"schedule_get_by_calendar", "oa/schedule/get_by_calendar", schedule_get_by_calendar_body, 1},
};

const size_t wc_endpoint_count = sizeof(wc_endpoints) / sizeof(wc_endpoints[0]);
