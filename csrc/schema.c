/* The endpoint table: one row per endpoint, each with the schema of its
 * request body (limits from API.md). The Lua client's methods are generated
 * from this table, so a new endpoint is a row here plus its schema. */
#include <string.h>

#include "wecom.h"

#define F_STR(n, fl, lo, hi) { .name = (n), .type = WC_STRING, .flags = (fl), .min = (lo), .max = (hi) }
#define F_ID(n, fl) F_STR(n, (fl) | WC_BYTES, 1, 64) /* the same rule as id_elem */
#define F_COLOR(n, fl) { .name = (n), .type = WC_COLOR, .flags = (fl) }
#define F_INT(n, fl, lo, hi) { .name = (n), .type = WC_INT, .flags = (fl), .min = (lo), .max = (hi) }
#define F_ENUM(n, fl, set) { .name = (n), .type = WC_INT, .flags = (fl), .one_of = (set) }
#define F_FLAG(n) { .name = (n), .type = WC_FLAG }
#define F_OBJ(n, fl, fs, chk) { .name = (n), .type = WC_OBJECT, .flags = (fl), .fields = (fs), .check = (chk) }
#define F_LIST(n, fl, lo, hi, el) \
    { .name = (n), .type = WC_ARRAY, .flags = (fl), .min = (lo), .max = (hi), .elem = (el) }
#define F_REFUSED(n, why) { .name = (n), .type = WC_ANY, .flags = WC_READONLY, .note = (why) }
#define F_END { .name = NULL }

/* A field list, ended by F_END. The encoder tracks which fields of an object
 * it has seen in one uint64_t bit each, hence the limit. */
#define FIELDS(list, ...)                                                       \
    static const wc_field list[] = {__VA_ARGS__, F_END};                        \
    _Static_assert(sizeof(list) / sizeof(list[0]) - 1 <= WC_MAX_FIELDS,         \
                   #list ": more fields than the encoder's bitmask holds")

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
/* Every id (userid, cal_id, schedule_id): 1..64 bytes. */
static const wc_field id_elem = { .type = WC_STRING, .flags = WC_BYTES, .min = 1, .max = 64 };
static const wc_field partyid_elem = { .type = WC_INT, .min = 1, .max = UINT32_MAX_ };

FIELDS(share_fields,
    F_ID("userid", WC_REQUIRED),
    F_FLAG("readonly"),
    F_ENUM("permission", 0, share_permissions));
static const wc_field share_elem = { .type = WC_OBJECT, .fields = share_fields };

FIELDS(public_range_fields,
    F_LIST("userids", 0, 0, 1000, &id_elem),
    F_LIST("partyids", 0, 0, 100, &partyid_elem));

#define CALENDAR_COMMON_FIELDS                                  \
    F_FLAG("readonly"),                                         \
    F_FLAG("set_as_default"),                                   \
    F_STR("summary", WC_REQUIRED, 1, 128),                      \
    F_COLOR("color", 0),                                        \
    F_STR("description", 0, 0, 512),                            \
    F_LIST("shares", 0, 0, 2000, &share_elem),                  \
    F_LIST("admins", 0, 0, 3, &id_elem),                    \
    F_OBJ("public_range", 0, public_range_fields, NULL)

FIELDS(calendar_add_fields,
    F_ID("organizer", 0),
    F_FLAG("is_public"),
    F_FLAG("is_corp_calendar"),
    CALENDAR_COMMON_FIELDS);

FIELDS(calendar_update_fields,
    F_ID("cal_id", WC_REQUIRED),
    F_REFUSED("organizer", "can't be updated: the organizer is fixed when the calendar is created"),
    F_REFUSED("is_public", "can't be updated: set it when the calendar is created"),
    F_REFUSED("is_corp_calendar", "can't be updated: set it when the calendar is created"),
    CALENDAR_COMMON_FIELDS);

FIELDS(calendar_add_body,
    F_OBJ("calendar", WC_REQUIRED, calendar_add_fields, calendar_add_rules),
    F_INT("agentid", 0, 0, UINT32_MAX_));

FIELDS(calendar_update_body,
    F_OBJ("calendar", WC_REQUIRED, calendar_update_fields, calendar_update_rules),
    F_FLAG("skip_public_range"));

FIELDS(calendar_get_body,
    F_LIST("cal_id_list", WC_REQUIRED, 1, 1000, &id_elem));

FIELDS(calendar_del_body,
    F_ID("cal_id", WC_REQUIRED));

/* ---- schedule ---------------------------------------------------------- */

static const lua_Integer remind_before_secs[] = {0, 300, 900, 3600, 86400, WC_END};
/* remind_time_diffs: the last three only for whole-day schedules (checked below) */
static const lua_Integer remind_diffs[] = {0, -300, -900, -3600, -86400, 32400, -172800, -604800, WC_END};
static const lua_Integer repeat_types[] = {0, 1, 2, 5, 7, WC_END};

static const wc_field remind_diff_elem = { .type = WC_INT, .one_of = remind_diffs };
static const wc_field weekday_elem = { .type = WC_INT, .min = 1, .max = 7 };
static const wc_field monthday_elem = { .type = WC_INT, .min = 1, .max = 31 };

FIELDS(reminders_fields,
    F_FLAG("is_remind"),
    F_ENUM("remind_before_event_secs", 0, remind_before_secs),
    F_LIST("remind_time_diffs", 0, 0, 8, &remind_diff_elem),
    F_FLAG("is_repeat"),
    F_ENUM("repeat_type", 0, repeat_types),
    F_INT("repeat_until", 0, 0, UINT32_MAX_),
    F_FLAG("is_custom_repeat"),
    F_INT("repeat_interval", 0, 1, 1000),
    F_LIST("repeat_day_of_week", 0, 0, 7, &weekday_elem),
    F_LIST("repeat_day_of_month", 0, 0, 31, &monthday_elem),
    F_INT("timezone", 0, -12, 12),
    F_REFUSED("exclude_time_list", "is read-only: WeCom keeps the occurrences removed with op_mode 1"));

FIELDS(attendee_fields,
    F_ID("userid", WC_REQUIRED),
    F_INT("response_status", 0, 0, 4));
static const wc_field attendee_elem = { .type = WC_OBJECT, .fields = attendee_fields };

/* The values of a list field of integers, checked by `ok` (a number at the
 * top of the stack); fails naming the first value that is not. */
static int each_int(wc_enc *e, int idx, const char *list, const char *field, const char *why,
                    int (*ok)(lua_State *L)) {
    lua_State *L = e->L;
    int top = lua_gettop(L), pass = 1;
    size_t i, n;
    if (raw_field(L, idx, list) != LUA_TTABLE) {
        lua_settop(L, top);
        return 1;
    }
    n = wc_rawlen(L, -1);
    for (i = 1; i <= n && pass; i++) {
        lua_rawgeti(L, top + 1, (lua_Integer)i);
        if (!ok(L)) {
            wc_enc_push_key(e, list);
            wc_enc_push_index(e, (lua_Integer)i);
            pass = wc_enc_fail(e, "%s %s", field, why);
            wc_enc_pop(e);
            wc_enc_pop(e);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    return pass;
}

static int is_regular_diff(lua_State *L) {
    lua_Number d = lua_tonumber(L, -1);
    return d == 0 || d == -300 || d == -900 || d == -3600 || d == -86400;
}

/* Fields of one schedule object (add and update). */
static int schedule_rules(wc_enc *e, int idx) {
    lua_State *L = e->L;
    lua_Number start, end;
    int whole_day, ok = 1;
    raw_field(L, idx, "start_time");
    start = lua_tonumber(L, -1);
    raw_field(L, idx, "end_time");
    end = lua_tonumber(L, -1);
    lua_pop(L, 2);
    if (!(end > start)) {
        wc_enc_push_key(e, "end_time");
        wc_enc_fail(e, "must be after start_time (%.0f), got %.0f", (double)start, (double)end);
        wc_enc_pop(e);
        return 0;
    }
    raw_field(L, idx, "is_whole_day");
    whole_day = flag_is_set(L);
    lua_pop(L, 1);
    if (whole_day) return 1;
    if (raw_field(L, idx, "reminders") == LUA_TTABLE) {
        wc_enc_push_key(e, "reminders");
        ok = each_int(e, lua_gettop(L), "remind_time_diffs", "32400, -172800 and -604800",
                      "are only for whole-day schedules (is_whole_day = 1)", is_regular_diff);
        wc_enc_pop(e);
    }
    lua_pop(L, 1);
    return ok;
}

/* admins must be attendees; not checkable when attendees are not sent and
 * WeCom keeps its own (skip_attendees = 1). */
static int schedule_admins_rule(wc_enc *e, int body, int skip_attendees) {
    lua_State *L = e->L;
    int ok = 1;
    if (raw_field(L, body, "schedule") == LUA_TTABLE) {
        int sched = lua_gettop(L);
        int has_attendees = raw_field(L, sched, "attendees") != LUA_TNIL;
        lua_pop(L, 1);
        if (has_attendees || !skip_attendees) {
            wc_enc_push_key(e, "schedule");
            ok = subset_rule(e, sched, "admins", "attendees", "userid", "must also be an attendee");
            wc_enc_pop(e);
        }
    }
    lua_pop(L, 1);
    return ok;
}

/* op_mode 1 and 2 name an occurrence by its start. */
static int op_mode_rule(wc_enc *e, int idx) {
    lua_State *L = e->L;
    lua_Number mode;
    raw_field(L, idx, "op_mode");
    mode = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (mode == 1 || mode == 2)
        return require_field(e, idx, "op_start_time", "required with op_mode 1 and 2: the start of the occurrence");
    return 1;
}

static int schedule_add_rules(wc_enc *e, int idx) {
    return schedule_admins_rule(e, idx, 0);
}

static int schedule_update_rules(wc_enc *e, int idx) {
    int skip;
    raw_field(e->L, idx, "skip_attendees");
    skip = flag_is_set(e->L);
    lua_pop(e->L, 1);
    return schedule_admins_rule(e, idx, skip) && op_mode_rule(e, idx);
}

#define SCHEDULE_COMMON_FIELDS                                        \
    F_LIST("admins", 0, 0, 3, &id_elem),                          \
    F_LIST("attendees", 0, 0, 1000, &attendee_elem),                  \
    F_STR("summary", 0, 0, 128),                                      \
    F_STR("description", 0, 0, 1000),                                 \
    F_STR("location", 0, 0, 128),                                     \
    F_INT("start_time", WC_REQUIRED, 0, UINT32_MAX_),                 \
    F_INT("end_time", WC_REQUIRED, 0, UINT32_MAX_),                   \
    F_FLAG("is_whole_day"),                                           \
    F_OBJ("reminders", 0, reminders_fields, NULL),                    \
    F_REFUSED("status", "is read-only: cancel a schedule with schedule_del"), \
    F_REFUSED("sequence", "is read-only: WeCom counts the changes")

FIELDS(schedule_add_fields,
    F_ID("cal_id", 0),
    F_ID("organizer", 0),
    SCHEDULE_COMMON_FIELDS);

FIELDS(schedule_update_fields,
    F_ID("schedule_id", WC_REQUIRED),
    F_REFUSED("cal_id", "can't be updated: a schedule stays in its calendar"),
    F_REFUSED("organizer", "can't be updated: the organizer is fixed when the schedule is created"),
    SCHEDULE_COMMON_FIELDS);

FIELDS(schedule_add_body,
    F_OBJ("schedule", WC_REQUIRED, schedule_add_fields, schedule_rules),
    F_INT("agentid", 0, 0, UINT32_MAX_));

FIELDS(schedule_update_body,
    F_OBJ("schedule", WC_REQUIRED, schedule_update_fields, schedule_rules),
    F_FLAG("skip_attendees"),
    F_INT("op_mode", 0, 0, 2),
    F_INT("op_start_time", 0, 0, UINT32_MAX_));

FIELDS(schedule_get_body,
    F_LIST("schedule_id_list", WC_REQUIRED, 1, 1000, &id_elem));

FIELDS(schedule_del_body,
    F_ID("schedule_id", WC_REQUIRED),
    F_INT("op_mode", 0, 0, 2),
    F_INT("op_start_time", 0, 0, UINT32_MAX_));

FIELDS(schedule_add_attendees_body,
    F_ID("schedule_id", WC_REQUIRED),
    F_LIST("attendees", WC_REQUIRED, 1, 1000, &attendee_elem));

FIELDS(schedule_del_attendees_body,
    F_ID("schedule_id", WC_REQUIRED),
    F_LIST("attendees", WC_REQUIRED, 1, 300, &attendee_elem));

FIELDS(schedule_get_by_calendar_body,
    F_ID("cal_id", WC_REQUIRED),
    F_INT("offset", 0, 0, INT32_MAX_),
    F_INT("limit", 0, 1, 1000));

/* ---- the table ----------------------------------------------------------- */

const wc_endpoint wc_endpoints[] = {
    {"calendar_add", "oa/calendar/add", calendar_add_body, 0, NULL},
    {"calendar_update", "oa/calendar/update", calendar_update_body, 1, NULL},
    {"calendar_get", "oa/calendar/get", calendar_get_body, 1, NULL},
    {"calendar_del", "oa/calendar/del", calendar_del_body, 1, NULL},
    {"schedule_get_by_calendar", "oa/schedule/get_by_calendar", schedule_get_by_calendar_body, 1, NULL},
    {"schedule_add", "oa/schedule/add", schedule_add_body, 0, schedule_add_rules},
    {"schedule_update", "oa/schedule/update", schedule_update_body, 1, schedule_update_rules},
    {"schedule_get", "oa/schedule/get", schedule_get_body, 1, NULL},
    {"schedule_del", "oa/schedule/del", schedule_del_body, 1, op_mode_rule},
    {"schedule_add_attendees", "oa/schedule/add_attendees", schedule_add_attendees_body, 0, NULL},
    {"schedule_del_attendees", "oa/schedule/del_attendees", schedule_del_attendees_body, 1, NULL},
};

const size_t wc_endpoint_count = sizeof(wc_endpoints) / sizeof(wc_endpoints[0]);
