/* Structs passed by value, as ADBench's GMM passes its Wishart prior:
 *
 * - a {double, int} the function takes in two registers, which the Enzyme call
 *   (variadic, its integer registers used up by the arrays before it) passes
 *   through a `byval` pointer: enzyme_const, and enzyme_dup with the address of
 *   a shadow struct that the gradient adds into;
 * - a struct of three doubles the function itself takes `byval`;
 * - a struct the call passes in registers too: one marker covers all of it
 *   (enzyme_const; enzyme_out, both fields' derivatives returned; forward mode's
 *   enzyme_dup with the tangent struct after it);
 * - forward mode with a tangent struct passed by value after the struct. */
#include "enzyme.h"

#define N 4
typedef struct { double gamma; int m; } prior;
typedef struct { double a, b, c; } quadratic;
typedef struct { double scale, shift; } affine;

double prior_energy(const double *x, const double *y, const double *z, int n, prior p) {
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += p.gamma * x[i] * x[i] + y[i] * z[i];
    return total * p.m + p.gamma * p.gamma;
}

double quadratic_sum(const double *x, int n, quadratic q) {
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += q.a * x[i] * x[i] + q.b * sin(x[i]) + q.c;
    return total;
}

double affine_product(affine f, double x) { return (f.scale * x + f.shift) * exp(f.shift * x); }

typedef struct { double first, second; } pair;
pair __enzyme_autodiff_pair2(void *, ...);

int main(void) {
    double x[N] = {0.3, -1.2, 0.8, 2.0}, y[N] = {1.0, 2.0, 3.0, 4.0}, z[N] = {0.5, 0.25, -1.0, 2.0};
    double dx[N] = {0}, dy[N] = {0}, dz[N] = {0}, h = 1e-6;
    int failures = 0;
    prior p = {1.5, 3};

    /* The prior comes after six integer-register arguments: the call passes it byval. */
    __enzyme_autodiff((void *)prior_energy, enzyme_dup, x, dx, enzyme_dup, y, dy, enzyme_const, z,
                      enzyme_const, N, enzyme_const, p);
    for (int i = 0; i < N; i++) {
        double saved = x[i];
        x[i] = saved + h; double plus = prior_energy(x, y, z, N, p);
        x[i] = saved - h; double minus = prior_energy(x, y, z, N, p);
        x[i] = saved;
        failures += check_close("d prior_energy / d x[i] (prior const)", dx[i], (plus - minus) / (2 * h), 1e-6);
        failures += check_close("d prior_energy / d y[i]", dy[i], z[i] * p.m, 1e-12);
    }
    prior dp = {0.0, 0};
    double dx2[N] = {0}, dy2[N] = {0};
    __enzyme_autodiff((void *)prior_energy, enzyme_dup, x, dx2, enzyme_dup, y, dy2, enzyme_const, z,
                      enzyme_const, N, enzyme_dup, p, &dp);
    prior up = p, down = p;
    up.gamma += h; down.gamma -= h;
    failures += check_close("d prior_energy / d gamma (shadow by address)", dp.gamma,
                            (prior_energy(x, y, z, N, up) - prior_energy(x, y, z, N, down)) / (2 * h), 1e-6);
    failures += check_close("d prior_energy / d x[0] (prior dup)", dx2[0], dx[0], 1e-14);

    /* Forward mode: the tangent struct by value, after the struct (both byval at the call). */
    prior tangent_prior = {0.75, 0};
    double tx[N] = {0.1, 0.2, -0.3, 0.4};
    double along = __enzyme_fwddiff((void *)prior_energy, enzyme_dup, x, tx, enzyme_const, y, enzyme_const, z,
                                    enzyme_const, N, enzyme_dup, p, tangent_prior);
    double expected = 0.75 * dp.gamma;
    for (int i = 0; i < N; i++)
        expected += tx[i] * dx[i];
    failures += check_close("forward: tangent of prior_energy (struct dup)", along, expected, 1e-12);

    quadratic q = {0.5, -2.0, 0.25}, dq = {0, 0, 0};
    double dxq[N] = {0};
    __enzyme_autodiff((void *)quadratic_sum, enzyme_dup, x, dxq, enzyme_const, N, enzyme_dup, q, &dq);
    double finite[3];
    for (int field = 0; field < 3; field++) {
        quadratic plus = q, minus = q;
        ((double *)&plus)[field] += h; ((double *)&minus)[field] -= h;
        finite[field] = (quadratic_sum(x, N, plus) - quadratic_sum(x, N, minus)) / (2 * h);
    }
    failures += check_close("d quadratic_sum / d a (byval parameter)", dq.a, finite[0], 1e-6);
    failures += check_close("d quadratic_sum / d b", dq.b, finite[1], 1e-6);
    failures += check_close("d quadratic_sum / d c", dq.c, finite[2], 1e-6);
    failures += check_close("d quadratic_sum / d x[1]", dxq[1], 2 * q.a * x[1] + q.b * cos(x[1]), 1e-12);

    /* Few arguments: the call passes `affine` in two registers, one marker for both. */
    affine f = {1.25, 0.5}, tangent = {0.3, -0.7};
    double xs = 0.9;
    double dxs = __enzyme_autodiff((void *)affine_product, enzyme_const, f, enzyme_out, xs);
    failures += check_close("d affine_product / d x (struct const, in registers)", dxs,
                            (affine_product(f, xs + h) - affine_product(f, xs - h)) / (2 * h), 1e-6);
    pair df = __enzyme_autodiff_pair2((void *)affine_product, enzyme_out, f, enzyme_const, xs);
    affine up_scale = {f.scale + h, f.shift}, down_scale = {f.scale - h, f.shift};
    affine up_shift = {f.scale, f.shift + h}, down_shift = {f.scale, f.shift - h};
    double d_scale = (affine_product(up_scale, xs) - affine_product(down_scale, xs)) / (2 * h);
    double d_shift = (affine_product(up_shift, xs) - affine_product(down_shift, xs)) / (2 * h);
    failures += check_close("d affine_product / d scale (struct out)", df.first, d_scale, 1e-6);
    failures += check_close("d affine_product / d shift (struct out)", df.second, d_shift, 1e-6);
    double directional = __enzyme_fwddiff((void *)affine_product, enzyme_dup, f, tangent, enzyme_const, xs);
    failures += check_close("forward: tangent of affine_product (struct dup)", directional,
                            tangent.scale * d_scale + tangent.shift * d_shift, 1e-6);
    return failures;
}
