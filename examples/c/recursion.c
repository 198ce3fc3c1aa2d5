/* Calls that stay calls: recursion (LLVM cannot inline a function into itself)
 * and `noinline` helpers, differentiated across the call:
 *
 * - a divide-and-conquer sum calling itself twice;
 * - a recursion that mallocs a struct holding a pointer to the differentiated
 *   array, reads the array through it, and frees it;
 * - two functions calling each other;
 * - a noinline helper writing an output array from an input array and an
 *   active scalar.
 *
 * Forward mode calls each callee's tangent function; reverse mode an augmented
 * forward function and, on the way back, a reverse function (see DESIGN.md,
 * "Calls that stay calls"). */
#include <stdlib.h>
#include "enzyme.h"

#define N 7

double tree_sum(const double *x, int n) {
    if (n == 1)
        return sin(x[0]);
    int half = n / 2;
    return tree_sum(x, half) * tree_sum(x + half, n - half) + x[0];
}

typedef struct { const double *data; int length; } view;

double tile_energy(const double *x, int n) {
    if (n <= 2) {
        double total = 0.0;
        for (int i = 0; i < n; i++)
            total += x[i] * x[i];
        return total;
    }
    view *left = malloc(sizeof(view));
    left->data = x;
    left->length = n / 2;
    double a = tile_energy(left->data, left->length);
    double b = tile_energy(x + n / 2, n - n / 2);
    free(left);
    return a * b + sin(a);
}

double odd_chain(const double *x, int n);

double even_chain(const double *x, int n) { return n == 0 ? 1.0 : x[n - 1] * odd_chain(x, n - 1); }

double odd_chain(const double *x, int n) { return n == 0 ? 0.5 : sin(x[n - 1]) + even_chain(x, n - 1); }

__attribute__((noinline)) void scale_into(double *out, const double *x, double s, int n) {
    for (int i = 0; i < n; i++)
        out[i] = s * x[i] * x[i];
}

double scaled_norm(const double *x, double *work, double s, int n) {
    scale_into(work, x, s, n);
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += work[i] * work[i];
    return sqrt(total);
}

static double scaled_norm_fixed(const double *x, int n) {
    double work[N];
    return scaled_norm(x, work, 0.75, n);
}

/* The gradient against finite differences, and forward mode's tangent along `v` against <gradient, v>. */
static int check_kernel(const char *name, double (*f)(const double *, int), const double *gradient, double *x,
                        const double *v, double forward) {
    double along = 0.0;
    for (int i = 0; i < N; i++)
        along += gradient[i] * v[i];
    return check_gradient(name, f, gradient, x, N)
        + check_close("  forward mode along v against the gradient", forward, along, 1e-12);
}

int main(void) {
    double x[N] = {0.4, -0.3, 1.1, 0.7, -0.9, 0.2, 0.5};
    double v[N] = {0.3, -0.2, 0.5, 0.1, -0.4, 0.25, 0.6};
    double g1[N] = {0}, g2[N] = {0}, g3[N] = {0}, g4[N] = {0}, work[N], dwork[N] = {0};
    int failures = 0;

    __enzyme_autodiff((void *)tree_sum, enzyme_dup, x, g1, enzyme_const, N);
    failures += check_kernel("d tree_sum / d x[i] (self recursion)", tree_sum, g1, x, v,
                             __enzyme_fwddiff((void *)tree_sum, enzyme_dup, x, v, enzyme_const, N));
    __enzyme_autodiff((void *)tile_energy, enzyme_dup, x, g2, enzyme_const, N);
    failures += check_kernel("d tile_energy / d x[i] (recursion, malloc'd view)", tile_energy, g2, x, v,
                             __enzyme_fwddiff((void *)tile_energy, enzyme_dup, x, v, enzyme_const, N));
    __enzyme_autodiff((void *)even_chain, enzyme_dup, x, g3, enzyme_const, N);
    failures += check_kernel("d even_chain / d x[i] (mutual recursion)", even_chain, g3, x, v,
                             __enzyme_fwddiff((void *)even_chain, enzyme_dup, x, v, enzyme_const, N));
    double ds = __enzyme_autodiff((void *)scaled_norm, enzyme_dup, x, g4, enzyme_dup, work, dwork,
                                  enzyme_out, 0.75, enzyme_const, N);
    double dwork_tangent[N] = {0};
    failures += check_kernel("d scaled_norm / d x[i] (noinline helper)", scaled_norm_fixed, g4, x, v,
                             __enzyme_fwddiff((void *)scaled_norm, enzyme_dup, x, v, enzyme_dup, work,
                                              dwork_tangent, enzyme_const, 0.75, enzyme_const, N));
    double h = 1e-6;
    failures += check_close("d scaled_norm / d s (noinline helper, active scalar)", ds,
                            (scaled_norm(x, work, 0.75 + h, N) - scaled_norm(x, work, 0.75 - h, N)) / (2 * h),
                            1e-6);
    return failures;
}
