/* Operations that return one of their operands (fmax, fmin, a ?: select):
 * the derivative is the chosen operand's, never 0 times the other's.
 *
 * normalized: v[0] / fmax(|v|, 1e-12) at v = 0 is v[0] / 1e-12, so its
 * derivative is exactly 1e12, although the derivative of sqrt at 0 (the
 * operand fmax does not return) is infinite. largest: at a tie the
 * derivative goes to the element the program returned (the second 2). */
#include "enzyme.h"

double normalized(const double *v) {
    double length = sqrt(v[0] * v[0] + v[1] * v[1]);
    return v[0] / fmax(length, 1e-12);
}

double clamped(const double *v) {
    double length = sqrt(v[0] * v[0] + v[1] * v[1]);
    return fmin(fmax(length, 0.5), 2.0) * v[1];
}

double largest(const double *v, int n) {
    double result = v[0];
    for (int i = 1; i < n; i++) result = (result > v[i]) ? result : v[i];
    return result;
}

static int check_exact(const char *what, double derivative, double expected) {
    printf("%-44s %+.12e   expected %+.12e   %s\n", what, derivative, expected,
           derivative == expected ? "ok" : "MISMATCH");
    return derivative == expected ? 0 : 1;
}

int main(void) {
    int failures = 0;
    double v[2] = {0.0, 0.0}, dv[2] = {1.0, 0.0}, g[2] = {0.0, 0.0};
    double tangent = __enzyme_fwddiff((void *)normalized, enzyme_dup, v, dv);
    __enzyme_autodiff((void *)normalized, enzyme_dup, v, g);
    failures += check_exact("forward d normalized / d v[0] at 0", tangent, 1e12);
    failures += check_exact("reverse d normalized / d v[0] at 0", g[0], 1e12);
    failures += check_exact("reverse d normalized / d v[1] at 0", g[1], 0.0);

    /* Away from the floor, both clamps and the unclamped middle against finite differences. */
    double points[3][2] = {{0.1, 0.2}, {0.6, 0.8}, {3.0, 1.0}}, h = 1e-6;
    for (int p = 0; p < 3; p++) {
        double *x = points[p], gx[2] = {0.0, 0.0};
        __enzyme_autodiff((void *)clamped, enzyme_dup, x, gx);
        for (int i = 0; i < 2; i++) {
            double e[2] = {0.0, 0.0};
            e[i] = 1.0;
            double forward = __enzyme_fwddiff((void *)clamped, enzyme_dup, x, e);
            double saved = x[i];
            x[i] = saved + h; double up = clamped(x);
            x[i] = saved - h; double down = clamped(x);
            x[i] = saved;
            char what[64];
            snprintf(what, sizeof what, "clamped at point %d, d / d v[%d], reverse", p, i);
            failures += check_close(what, gx[i], (up - down) / (2 * h), 1e-6);
            snprintf(what, sizeof what, "clamped at point %d, d / d v[%d], forward", p, i);
            failures += check_close(what, forward, (up - down) / (2 * h), 1e-6);
        }
    }

    double w[5] = {-1.0, 2.0, -0.2, 2.0, 1.0}, gw[5] = {0.0};
    __enzyme_autodiff((void *)largest, enzyme_dup, w, gw, enzyme_const, 5);
    for (int i = 0; i < 5; i++) {
        char what[64];
        snprintf(what, sizeof what, "reverse d largest / d v[%d] (tie: v[3] won)", i);
        failures += check_exact(what, gw[i], i == 3 ? 1.0 : 0.0);
    }
    for (int i = 0; i < 5; i++) {
        double e[5] = {0.0};
        e[i] = 1.0;
        char what[64];
        snprintf(what, sizeof what, "forward d largest / d v[%d] (tie: v[3] won)", i);
        failures += check_exact(what, __enzyme_fwddiff((void *)largest, enzyme_dup, w, e, enzyme_const, 5),
                                i == 3 ? 1.0 : 0.0);
    }
    return failures;
}
