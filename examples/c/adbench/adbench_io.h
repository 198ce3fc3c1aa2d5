/* ADBench's data files and its acceptance test, shared by gmm.c, lstm.c and ba.c.
 *
 * The instance files separate numbers with blanks, the reference gradient and
 * Jacobian files with ", ": the reader treats commas as blanks so one reader
 * serves both. Any malformed file ends the program (exit 2), so a test can
 * never pass on data it did not read. */
#ifndef ENZPY_ADBENCH_IO_H
#define ENZPY_ADBENCH_IO_H

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define ADBENCH_TOLERANCE 1e-8

static inline void adbench_fail(const char *path, const char *why) {
    fprintf(stderr, "%s: %s\n", path, why);
    exit(2);
}

static inline FILE *adbench_open(const char *path) {
    FILE *file = fopen(path, "r");
    if (!file) adbench_fail(path, "cannot open");
    return file;
}

/* 1 and the number in *value, or 0 at the end of the file. */
static inline int adbench_next(FILE *file, const char *path, double *value) {
    int c;
    do c = fgetc(file); while (c == ',' || isspace(c));
    if (c == EOF) return 0;
    ungetc(c, file);
    if (fscanf(file, "%lf", value) != 1) adbench_fail(path, "not a number");
    return 1;
}

static inline double adbench_number(FILE *file, const char *path) {
    double value;
    if (!adbench_next(file, path, &value)) adbench_fail(path, "ends early");
    return value;
}

static inline int adbench_int(FILE *file, const char *path) { return (int)adbench_number(file, path); }

static inline double *adbench_numbers(FILE *file, const char *path, int count) {
    double *values = (double *)malloc((size_t)(count > 0 ? count : 1) * sizeof(double));
    for (int i = 0; i < count; i++) values[i] = adbench_number(file, path);
    return values;
}

/* A reference file holds exactly `count` values: more means the layouts disagree. */
static inline double *adbench_reference(const char *path, int count) {
    FILE *file = adbench_open(path);
    double *values = adbench_numbers(file, path, count);
    double extra;
    if (adbench_next(file, path, &extra)) adbench_fail(path, "holds more values than expected");
    fclose(file);
    return values;
}

/* ADBench's test, |a - b| <= 1e-8 max(1, |b|) entry by entry; prints the worst
 * entry and returns the number of mismatches. */
static inline int adbench_compare(const char *what, int count, const double *got, const double *expected) {
    int mismatches = 0, worst = 0;
    double worst_error = -1.0;
    for (int i = 0; i < count; i++) {
        double scale = fabs(expected[i]) > 1.0 ? fabs(expected[i]) : 1.0;
        double error = fabs(got[i] - expected[i]) / scale;
        if (!(error <= ADBENCH_TOLERANCE)) mismatches++;          /* a NaN is a mismatch */
        if (!(error <= worst_error)) { worst_error = error; worst = i; }
    }
    printf("%-28s %4d values, worst relative error %.2e at %d (%.17g vs %.17g): %s\n", what, count,
           worst_error, worst, count ? got[worst] : 0.0, count ? expected[worst] : 0.0,
           mismatches ? "MISMATCH" : "ok");
    return mismatches;
}

#endif
