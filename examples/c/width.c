/* Vector forward mode: `enzyme_width, k` gives each duplicated argument k
 * shadows (k tangents for a float), and one call returns k directional
 * derivatives: k columns of a Jacobian for the price of one sweep.
 *
 * - a scalar function of an array and a scalar: the tangents come back as a
 *   struct of k doubles, each checked against a width-1 call;
 * - an array-to-array stencil: three Jacobian columns in one call, each lane's
 *   output shadow a column, checked against central finite differences. */
#include "enzyme.h"

#define N 5
#define K 3

extern int enzyme_width;
typedef struct { double lane[K]; } tangents;
tangents __enzyme_fwddiff_width(void *, ...);
void __enzyme_fwddiff_void(void *, ...);

double weighted_sines(const double *x, double s, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += sin(x[i]) * s * x[i];
    return total;
}

void smooth(const double *x, double *y, int n) {
    for (int i = 0; i < n; i++) {
        double left = x[i > 0 ? i - 1 : i], right = x[i + 1 < n ? i + 1 : i];
        y[i] = exp(0.25 * left) + x[i] * x[i] - 0.5 * right;
    }
}

int main(void) {
    double x[N] = {0.1, 0.2, 0.3, -0.4, 0.5}, s = 2.0, h = 1e-6;
    double e[K][N] = {{1, 0, 0, 0, 0}, {0, 1, 0, 0, 0}, {0.5, 0.5, 0.5, 0.5, 0.5}};
    double ds[K] = {0.0, 0.0, 1.0};
    int failures = 0;

    tangents t = __enzyme_fwddiff_width((void *)weighted_sines, enzyme_width, K, enzyme_dup, x, e[0], e[1], e[2],
                                        enzyme_dup, s, ds[0], ds[1], ds[2], enzyme_const, N);
    for (int lane = 0; lane < K; lane++) {
        double single = __enzyme_fwddiff((void *)weighted_sines, enzyme_dup, x, e[lane], enzyme_dup, s, ds[lane],
                                         enzyme_const, N);
        failures += check_close("width 3: lane against a width-1 call", t.lane[lane], single, 1e-15);
    }

    double y[N], dy[K][N], column[N], plus[N], minus[N], xp[N], xm[N];
    __enzyme_fwddiff_void((void *)smooth, enzyme_width, K, enzyme_dup, x, e[0], e[1], e[2],
                          enzyme_dup, y, dy[0], dy[1], dy[2], enzyme_const, N);
    for (int lane = 0; lane < K; lane++) {
        for (int i = 0; i < N; i++) { xp[i] = x[i] + h * e[lane][i]; xm[i] = x[i] - h * e[lane][i]; }
        smooth(xp, plus, N);
        smooth(xm, minus, N);
        for (int i = 0; i < N; i++) {
            column[i] = (plus[i] - minus[i]) / (2 * h);
            failures += check_close("width 3: J e_lane of the stencil", dy[lane][i], column[i], 1e-6);
        }
    }
    return failures;
}
