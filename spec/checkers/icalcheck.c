/* Checks iCalendar files with libical (Debian's libical-dev), a parser
 * nobody here wrote: each file must parse into one VCALENDAR, pass
 * libical's restriction check, and carry no X-LIC-ERROR property (libical
 * adds one for every syntax or value error it meets).
 *
 *   icalcheck FILE...   prints "FILE: ok, N events" or the errors; exit 1 on any */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libical/ical.h>

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Prints every X-LIC-ERROR of c and its subcomponents; returns how many. */
static int print_errors(const char *path, icalcomponent *c) {
    int n = 0;
    for (icalproperty *p = icalcomponent_get_first_property(c, ICAL_XLICERROR_PROPERTY); p;
         p = icalcomponent_get_next_property(c, ICAL_XLICERROR_PROPERTY)) {
        printf("%s: %s: %s\n", path, icalcomponent_kind_to_string(icalcomponent_isa(c)),
               icalproperty_get_xlicerror(p));
        n++;
    }
    for (icalcomponent *s = icalcomponent_get_first_component(c, ICAL_ANY_COMPONENT); s;
         s = icalcomponent_get_next_component(c, ICAL_ANY_COMPONENT))
        n += print_errors(path, s);
    return n;
}

static int check(const char *path) {
    char *data = read_file(path);
    if (!data) {
        printf("%s: can't read\n", path);
        return 1;
    }
    icalcomponent *cal = icalparser_parse_string(data);
    free(data);
    if (!cal) {
        printf("%s: libical could not parse it\n", path);
        return 1;
    }
    int bad = 0;
    if (icalcomponent_isa(cal) != ICAL_VCALENDAR_COMPONENT) {
        printf("%s: not a single VCALENDAR (%s)\n", path, icalcomponent_kind_to_string(icalcomponent_isa(cal)));
        bad = 1;
    }
    if (!icalrestriction_check(cal)) {
        printf("%s: the restriction check failed\n", path);
        bad = 1;
    }
    if (print_errors(path, cal) > 0) bad = 1;
    int events = icalcomponent_count_components(cal, ICAL_VEVENT_COMPONENT);
    if (!bad) printf("%s: ok, %d events\n", path, events);
    icalcomponent_free(cal);
    return bad;
}

int main(int argc, char **argv) {
    int bad = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: icalcheck FILE...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) bad |= check(argv[i]);
    return bad;
}
