/* Loops over arrays with libm calls: the gradient (reverse mode) and a
 * directional derivative (forward mode) of a scalar energy, and the
 * vector-Jacobian product of an array-to-array stencil, each checked against
 * central finite differences. */
#include "enzyme.h"

#define N 12

double energy(const double *x, int n, double temperature) {
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double v = x[i];
        total += sin(v) * exp(-v * v / temperature) + pow(fabs(v) + 1.0, 1.5) + log1p(v * v)
               + sqrt(1.0 + v * v) * tanh(v) + atan2(v, temperature) + cos(v) / (2.0 + cosh(v));
    }
    return total;
}

/* y[i] = smoothed x, written in place of y's old contents. */
void smooth(const double *x, double *y, int n) {
    for (int i = 0; i < n; i++) {
        double left = i > 0 ? x[i - 1] : x[i], right = i + 1 < n ? x[i + 1] : x[i];
        y[i] = exp(0.25 * left + 0.5 * x[i] + 0.25 * right) - 1.0;
    }
}

static double weighted_smooth(const double *x, const double *weights, int n) {
    double y[N], total = 0.0;
    smooth(x, y, n);
    for (int i = 0; i < n; i++) total += weights[i] * y[i];
    return total;
}

int main(void) {
    double x[N], dx[N] = {0}, tangent[N], temperature = 1.7, h = 1e-6;
    int failures = 0;
    for (int i = 0; i < N; i++) {
        x[i] = 0.3 * i - 1.4;
        tangent[i] = cos(1.0 + i);
    }

    /* reverse: d energy / d x into dx, d energy / d temperature returned */
    double dtemperature = __enzyme_autodiff((void *)energy, enzyme_dup, x, dx, enzyme_const, N,
                                            enzyme_out, temperature);
    for (int i = 0; i < N; i += 3) {
        double saved = x[i];
        x[i] = saved + h; double up = energy(x, N, temperature);
        x[i] = saved - h; double down = energy(x, N, temperature);
        x[i] = saved;
        char what[64]; snprintf(what, sizeof what, "reverse d energy / d x[%d]", i);
        failures += check_close(what, dx[i], (up - down) / (2 * h), 1e-6);
    }
    failures += check_close("reverse d energy / d temperature", dtemperature,
                            (energy(x, N, temperature + h) - energy(x, N, temperature - h)) / (2 * h), 1e-6);

    /* forward: derivative along (tangent, 0.5) in (x, temperature) */
    double directional = __enzyme_fwddiff((void *)energy, enzyme_dup, x, tangent, enzyme_const, N,
                                          temperature, 0.5);
    double up[N], down[N];
    for (int i = 0; i < N; i++) { up[i] = x[i] + h * tangent[i]; down[i] = x[i] - h * tangent[i]; }
    failures += check_close("forward directional derivative", directional,
                            (energy(up, N, temperature + 0.5 * h) - energy(down, N, temperature - 0.5 * h)) / (2 * h),
                            1e-6);

    /* reverse through an array output: dx = J^T w for y = smooth(x) */
    double y[N], dy[N], dsmooth[N] = {0};
    for (int i = 0; i < N; i++) dy[i] = 1.0 / (1 + i);
    double weights[N];
    for (int i = 0; i < N; i++) weights[i] = dy[i];
    __enzyme_autodiff((void *)smooth, enzyme_dup, x, dsmooth, enzyme_dupnoneed, y, dy, enzyme_const, N);
    for (int i = 0; i < N; i += 4) {
        double saved = x[i];
        x[i] = saved + h; double plus = weighted_smooth(x, weights, N);
        x[i] = saved - h; double minus = weighted_smooth(x, weights, N);
        x[i] = saved;
        char what[64]; snprintf(what, sizeof what, "reverse (J^T w)[%d] of smooth", i);
        failures += check_close(what, dsmooth[i], (plus - minus) / (2 * h), 1e-6);
    }

    /* forward through an array output: y' = J v */
    double ydot[N] = {0};
    __enzyme_fwddiff((void *)smooth, enzyme_dup, x, tangent, enzyme_dup, y, ydot, enzyme_const, N);
    double yup[N], ydown[N];
    smooth(up, yup, N);
    smooth(down, ydown, N);
    for (int i = 1; i < N; i += 4) {
        char what[64]; snprintf(what, sizeof what, "forward (J v)[%d] of smooth", i);
        failures += check_close(what, ydot[i], (yup[i] - ydown[i]) / (2 * h), 1e-6);
    }
    printf("%s\n", failures ? "FAILED" : "all derivatives agree");
    return failures != 0;
}
