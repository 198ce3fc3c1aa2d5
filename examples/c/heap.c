/* Heap memory inside the differentiated function, as ADBench's C code allocates
 * its work arrays:
 *
 * - malloc'd and calloc'd work arrays, written, read, freed before returning;
 * - a malloc'd struct holding a pointer to another malloc'd block;
 * - a block allocated in one loop iteration and freed in the same iteration.
 *
 * Each block gets a zero-filled shadow block; the reverse sweep frees the
 * shadow where it passes the allocation, the program's free stays where it is
 * (the values the reverse sweep needs from the block are kept on the tape). */
#include <stdlib.h>
#include "enzyme.h"

#define N 6

typedef struct { int length; double *values; } buffer;

static buffer *buffer_new(int length) {
    buffer *b = malloc(sizeof(buffer));
    b->length = length;
    b->values = calloc(length, sizeof(double));
    return b;
}

static void buffer_free(buffer *b) {
    free(b->values);
    free(b);
}

/* A smoothing pass and a weighted norm through two work arrays. */
double smoothed_norm(const double *x, const double *w, int n) {
    double *smooth = malloc(n * sizeof(double));
    double *squares = calloc(n, sizeof(double));
    for (int i = 0; i < n; i++) {
        double left = x[i > 0 ? i - 1 : i], right = x[i + 1 < n ? i + 1 : i];
        smooth[i] = 0.25 * left + 0.5 * x[i] + 0.25 * right;
    }
    for (int i = 0; i < n; i++)
        squares[i] = w[i] * smooth[i] * smooth[i];
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += squares[i];
    free(smooth);
    free(squares);
    return sqrt(total);
}

/* Running products kept in a struct that owns its array. */
double running_products(const double *x, int n) {
    buffer *b = buffer_new(n);
    b->values[0] = x[0];
    for (int i = 1; i < b->length; i++)
        b->values[i] = b->values[i - 1] * cos(x[i]) + x[i];
    double last = b->values[b->length - 1];
    buffer_free(b);
    return last * last;
}

/* A temporary per iteration. */
double pairwise_energy(const double *x, int n) {
    double total = 0.0;
    for (int i = 0; i + 1 < n; i++) {
        double *pair = malloc(2 * sizeof(double));
        pair[0] = x[i] * x[i + 1];
        pair[1] = exp(-x[i]);
        total += pair[0] * pair[1];
        free(pair);
    }
    return total;
}

static double smoothed_norm_fixed(const double *x, int n) {
    static const double w[N] = {1.0, 2.0, 0.5, 1.5, 1.0, 3.0};
    return smoothed_norm(x, w, n);
}

int main(void) {
    double x[N] = {0.4, -0.3, 1.1, 0.7, -0.9, 0.2}, w[N] = {1.0, 2.0, 0.5, 1.5, 1.0, 3.0};
    double directions[N] = {0.3, -0.2, 0.5, 0.1, -0.4, 0.25};
    double gradient[N] = {0}, gradient2[N] = {0}, gradient3[N] = {0};
    int failures = 0;

    __enzyme_autodiff((void *)smoothed_norm, enzyme_dup, x, gradient, enzyme_const, w, enzyme_const, N);
    failures += check_gradient("d smoothed_norm / d x[i] (malloc, calloc)", smoothed_norm_fixed, gradient, x, N);
    __enzyme_autodiff((void *)running_products, enzyme_dup, x, gradient2, enzyme_const, N);
    failures += check_gradient("d running_products / d x[i] (struct owning a block)", running_products, gradient2, x,
                               N);
    __enzyme_autodiff((void *)pairwise_energy, enzyme_dup, x, gradient3, enzyme_const, N);
    failures += check_gradient("d pairwise_energy / d x[i] (a block per iteration)", pairwise_energy, gradient3, x, N);

    /* Forward mode against the reverse gradients: <J v> = <grad, v>. */
    double expected[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        expected[0] += gradient[i] * directions[i];
        expected[1] += gradient2[i] * directions[i];
        expected[2] += gradient3[i] * directions[i];
    }
    failures += check_close("forward smoothed_norm along v",
                            __enzyme_fwddiff((void *)smoothed_norm, enzyme_dup, x, directions, enzyme_const, w,
                                             enzyme_const, N), expected[0], 1e-12);
    failures += check_close("forward running_products along v",
                            __enzyme_fwddiff((void *)running_products, enzyme_dup, x, directions, enzyme_const, N),
                            expected[1], 1e-12);
    failures += check_close("forward pairwise_energy along v",
                            __enzyme_fwddiff((void *)pairwise_energy, enzyme_dup, x, directions, enzyme_const, N),
                            expected[2], 1e-12);
    return failures;
}
