/* Enzyme's calling convention, as a C program that uses Enzyme declares it,
 * plus the finite-difference check every example ends with.
 *
 * enzpy opt replaces each call to __enzyme_autodiff / __enzyme_fwddiff (any
 * function whose name contains those words, so several return types can be
 * declared) by a call to the generated derivative. */
#ifndef ENZPY_EXAMPLE_ENZYME_H
#define ENZPY_EXAMPLE_ENZYME_H

#include <math.h>
#include <stdio.h>

extern int enzyme_dup, enzyme_const, enzyme_out, enzyme_dupnoneed;

double __enzyme_autodiff(void *, ...);
double __enzyme_fwddiff(void *, ...);

/* Two enzyme_out derivatives come back as a struct, as Enzyme returns them. */
typedef struct { double first, second; } derivative_pair;
derivative_pair __enzyme_autodiff_pair(void *, ...);

/* 1 (and a line saying so) when `derivative` and the finite difference disagree. */
static int check_close(const char *what, double derivative, double finite_difference, double tolerance) {
    double scale = fabs(finite_difference) > 1.0 ? fabs(finite_difference) : 1.0;
    int agree = fabs(derivative - finite_difference) <= tolerance * scale;
    printf("%-44s %+.12e   finite difference %+.12e   %s\n", what, derivative, finite_difference,
           agree ? "ok" : "MISMATCH");
    return agree ? 0 : 1;
}

/* The failures of `gradient` against central differences of f(x, n) at x, one line per entry. */
static int check_gradient(const char *what, double (*f)(const double *, int), const double *gradient,
                          double *x, int n) {
    int failures = 0;
    double h = 1e-6;
    for (int i = 0; i < n; i++) {
        double saved = x[i];
        x[i] = saved + h; double plus = f(x, n);
        x[i] = saved - h; double minus = f(x, n);
        x[i] = saved;
        failures += check_close(what, gradient[i], (plus - minus) / (2 * h), 1e-6);
    }
    return failures;
}

#endif
