/* Dot products and norms: two enzyme_out scalars returned as a struct,
 * a function of two arrays, and a float (single precision) kernel, checked
 * against central finite differences in both modes. */
#include "enzyme.h"

#define N 8

double dot(const double *x, const double *y, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += x[i] * y[i];
    return total;
}

double norm(const double *x, int n) { return sqrt(dot(x, x, n)); }

/* a * |x| + b * <x, x>^1.5: two active scalars */
double blend(const double *x, int n, double a, double b) {
    double length = norm(x, n);
    return a * length + b * pow(length, 3.0);
}

float norm_float(const float *x, int n) {
    float total = 0.0f;
    for (int i = 0; i < n; i++) total += x[i] * x[i];
    return sqrtf(total);
}

int main(void) {
    double x[N], y[N], dx[N] = {0}, dy[N] = {0}, tangent[N], h = 1e-6;
    int failures = 0;
    for (int i = 0; i < N; i++) { x[i] = 0.5 + 0.25 * i; y[i] = 1.0 - 0.1 * i * i; tangent[i] = 1.0 / (1 + i); }

    __enzyme_autodiff((void *)dot, x, dx, y, dy, N);          /* defaults: pointers dup, int const */
    failures += check_close("reverse d dot / d x[3] = y[3]", dx[3], y[3], 1e-12);
    failures += check_close("reverse d dot / d y[5] = x[5]", dy[5], x[5], 1e-12);

    derivative_pair dab = __enzyme_autodiff_pair((void *)blend, enzyme_const, x, enzyme_const, N,
                                                 enzyme_out, 0.7, enzyme_out, -0.2);
    failures += check_close("reverse d blend / d a", dab.first,
                            (blend(x, N, 0.7 + h, -0.2) - blend(x, N, 0.7 - h, -0.2)) / (2 * h), 1e-6);
    failures += check_close("reverse d blend / d b", dab.second,
                            (blend(x, N, 0.7, -0.2 + h) - blend(x, N, 0.7, -0.2 - h)) / (2 * h), 1e-6);

    double dnorm[N] = {0};
    __enzyme_autodiff((void *)blend, enzyme_dup, x, dnorm, N, enzyme_const, 0.7, enzyme_const, -0.2);
    double up[N], down[N];
    for (int i = 0; i < N; i++) { up[i] = x[i] + h * tangent[i]; down[i] = x[i] - h * tangent[i]; }
    double along = 0.0;
    for (int i = 0; i < N; i++) along += dnorm[i] * tangent[i];
    double finite = (blend(up, N, 0.7, -0.2) - blend(down, N, 0.7, -0.2)) / (2 * h);
    failures += check_close("reverse <grad blend, v>", along, finite, 1e-6);
    double forward = __enzyme_fwddiff((void *)blend, enzyme_dup, x, tangent, enzyme_const, N,
                                      enzyme_const, 0.7, enzyme_const, -0.2);
    failures += check_close("forward blend' v", forward, finite, 1e-6);

    float xf[N], dxf[N] = {0}, tf[N];
    for (int i = 0; i < N; i++) { xf[i] = (float)x[i]; tf[i] = (float)tangent[i]; }
    __enzyme_autodiff((void *)norm_float, enzyme_dup, xf, dxf, enzyme_const, N);
    float fnorm = norm_float(xf, N);
    failures += check_close("reverse d |x|_float / d x[2] = x[2] / |x|", dxf[2], xf[2] / fnorm, 1e-5);
    float tangent_norm = 0.0f;
    for (int i = 0; i < N; i++) tangent_norm += xf[i] * tf[i] / fnorm;
    double forward_float = __enzyme_fwddiff((void *)norm_float, enzyme_dup, xf, tf, enzyme_const, N);
    failures += check_close("forward |x|_float' v", forward_float, tangent_norm, 1e-5);
    printf("%s\n", failures ? "FAILED" : "all derivatives agree");
    return failures != 0;
}
