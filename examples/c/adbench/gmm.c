/* ADBench's Gaussian mixture objective with a Wishart prior, in the C style of
 * ADBench's own sources (the prior's parameters as a struct passed by value,
 * work arrays malloc'd and freed inside the objective), differentiated with
 * __enzyme_autodiff with respect to (alphas, means, icf).
 *
 *   gmm INSTANCE      e.g. gmm_test.txt: checks the objective and the gradient
 *                     against the values ADBench's unit tests quote
 *
 * Built with -DPRIMAL_ONLY (plain clang, no enzpy) only the objective is checked.
 * gmm_gradient is what benchmarks/c_path.py calls through ctypes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../enzyme.h"
#include "adbench_io.h"

typedef struct {
    double gamma;
    int m;
} Wishart;

/* log of the multivariate gamma function Gamma_p(a) (ADBench's log_gamma_distrib). */
static double log_gamma_distrib(double a, int p) {
    double out = 0.25 * p * (p - 1) * log(M_PI);
    for (int j = 1; j <= p; j++) out += lgamma(a + 0.5 * (1 - j));
    return out;
}

static double arr_max(int n, const double *x) {
    double m = x[0];
    for (int i = 1; i < n; i++)
        if (m < x[i]) m = x[i];
    return m;
}

static double sqnorm(int n, const double *x) {
    double res = 0.0;
    for (int i = 0; i < n; i++) res += x[i] * x[i];
    return res;
}

static void subtract(int d, const double *x, const double *y, double *out) {
    for (int id = 0; id < d; id++) out[id] = x[id] - y[id];
}

/* Shifted by the maximum so that exp cannot overflow. */
static double log_sum_exp(int n, const double *x) {
    double mx = arr_max(n, x), semx = 0.0;
    for (int i = 0; i < n; i++) semx += exp(x[i] - mx);
    return log(semx) + mx;
}

/* Per component: log det Q (the sum of the log-diagonal) and Q's diagonal. */
static void preprocess_qs(int d, int k, const double *icf, double *sum_qs, double *Qdiags) {
    int icf_sz = d * (d + 1) / 2;
    for (int ik = 0; ik < k; ik++) {
        sum_qs[ik] = 0.0;
        for (int id = 0; id < d; id++) {
            double q = icf[ik * icf_sz + id];
            sum_qs[ik] += q;
            Qdiags[ik * d + id] = exp(q);
        }
    }
}

/* out = Q x with Q = diag(Qdiag) + the strict lower triangle `ltri`, which is
 * stored column by column: walking it in storage order is walking columns. */
static void Qtimesx(int d, const double *Qdiag, const double *ltri, const double *x, double *out) {
    for (int id = 0; id < d; id++) out[id] = Qdiag[id] * x[id];
    int Lparamsidx = 0;
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j < d; j++) out[j] += ltri[Lparamsidx++] * x[i];
}

static double log_wishart_prior(int p, int k, Wishart wishart, const double *sum_qs, const double *Qdiags,
                                const double *icf) {
    int n = p + wishart.m + 1;
    int icf_sz = p * (p + 1) / 2;
    double C = n * p * (log(wishart.gamma) - 0.5 * log(2)) - log_gamma_distrib(0.5 * n, p);
    double out = 0.0;
    for (int ik = 0; ik < k; ik++) {
        double frobenius = sqnorm(p, &Qdiags[ik * p]) + sqnorm(icf_sz - p, &icf[ik * icf_sz + p]);
        out += 0.5 * wishart.gamma * wishart.gamma * frobenius - wishart.m * sum_qs[ik];
    }
    return out - k * C;
}

/* `restrict` on the output says what C cannot know otherwise: *err overlaps no input. Without it
 * the final store may overwrite any input, so the reverse sweep could re-read no input it loaded
 * and would keep them all on the tape. */
void gmm_objective(int d, int k, int n, const double *alphas, const double *means, const double *icf,
                   const double *x, Wishart wishart, double *restrict err) {
    const double CONSTANT = -n * d * 0.5 * log(2 * M_PI);
    int icf_sz = d * (d + 1) / 2;
    double *Qdiags = (double *)malloc(d * k * sizeof(double));
    double *sum_qs = (double *)malloc(k * sizeof(double));
    double *xcentered = (double *)malloc(d * sizeof(double));
    double *Qxcentered = (double *)malloc(d * sizeof(double));
    double *main_term = (double *)malloc(k * sizeof(double));

    preprocess_qs(d, k, icf, sum_qs, Qdiags);
    double slse = 0.0;
    for (int ix = 0; ix < n; ix++) {
        for (int ik = 0; ik < k; ik++) {
            subtract(d, &x[ix * d], &means[ik * d], xcentered);
            Qtimesx(d, &Qdiags[ik * d], &icf[ik * icf_sz + d], xcentered, Qxcentered);
            main_term[ik] = alphas[ik] + sum_qs[ik] - 0.5 * sqnorm(d, Qxcentered);
        }
        slse += log_sum_exp(k, main_term);
    }
    double lse_alphas = log_sum_exp(k, alphas);
    *err = CONSTANT + slse - n * lse_alphas + log_wishart_prior(d, k, wishart, sum_qs, Qdiags, icf);

    free(Qdiags);
    free(sum_qs);
    free(xcentered);
    free(Qxcentered);
    free(main_term);
}

/* Scalars instead of the struct, so a ctypes caller needs no struct layout. */
double gmm_primal(int d, int k, int n, const double *alphas, const double *means, const double *icf,
                  const double *x, double gamma, int m) {
    Wishart wishart = {gamma, m};
    double err;
    gmm_objective(d, k, n, alphas, means, icf, x, wishart, &err);
    return err;
}

#ifndef PRIMAL_ONLY
/* The objective into *err, its gradient into J: alphas (k), means (k d), icf
 * (k d(d+1)/2), ADBench's flat order. Enzyme adds into shadows: J is zeroed first. */
void gmm_gradient(int d, int k, int n, const double *alphas, const double *means, const double *icf,
                  const double *x, double gamma, int m, double *err, double *J) {
    Wishart wishart = {gamma, m};
    int icf_sz = d * (d + 1) / 2;
    memset(J, 0, (size_t)(k + k * d + k * icf_sz) * sizeof(double));
    double d_err = 1.0;
    __enzyme_autodiff((void *)gmm_objective, enzyme_const, d, enzyme_const, k, enzyme_const, n,
                      enzyme_dup, alphas, J, enzyme_dup, means, J + k, enzyme_dup, icf, J + k + k * d,
                      enzyme_const, x, enzyme_const, wishart, enzyme_dup, err, &d_err);
}
#endif

/* ADBench's unit-test values for gmm_test.txt (see shared/adbench/README.md). */
static const double REFERENCE_OBJECTIVE = 8.07380408004975791;
static const double REFERENCE_GRADIENT[] = {
    0.108662855508652456, -0.741270039523898472, 0.632607184015246071,  1.11692576532787013,
    0.163333013551455269, -0.0219989824071193142, 0.227778292254236098, 1.20963025612832187,
    -0.0606375920733956339, 2.58529994051162237, 0.112632694524213789,  0.385744309849611777,
    0.0735180573182305508, 5.41836362715595232,  -0.321494409677446469, 1.71892309775004937,
    0.860091090790866875,  -0.994640930466322848};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s GMM_INSTANCE\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    FILE *file = adbench_open(path);
    int d = adbench_int(file, path), k = adbench_int(file, path), n = adbench_int(file, path);
    int icf_sz = d * (d + 1) / 2;
    double *alphas = adbench_numbers(file, path, k);
    double *means = adbench_numbers(file, path, k * d);
    double *icf = adbench_numbers(file, path, k * icf_sz);
    double *x = adbench_numbers(file, path, n * d);
    Wishart wishart;
    wishart.gamma = adbench_number(file, path);
    wishart.m = adbench_int(file, path);
    fclose(file);
    printf("GMM %s: d=%d k=%d n=%d\n", path, d, k, n);

    int failures = 0;
    double err;
    gmm_objective(d, k, n, alphas, means, icf, x, wishart, &err);
    failures += adbench_compare("objective", 1, &err, &REFERENCE_OBJECTIVE);
#ifndef PRIMAL_ONLY
    int size = k + k * d + k * icf_sz;
    if (size != (int)(sizeof REFERENCE_GRADIENT / sizeof *REFERENCE_GRADIENT)) {
        fprintf(stderr, "%s is not gmm_test.txt: the reference gradient has another size\n", path);
        return 2;
    }
    double *J = (double *)malloc(size * sizeof(double)), err_from_gradient;
    gmm_gradient(d, k, n, alphas, means, icf, x, wishart.gamma, wishart.m, &err_from_gradient, J);
    failures += adbench_compare("objective (gradient call)", 1, &err_from_gradient, &REFERENCE_OBJECTIVE);
    failures += adbench_compare("gradient (alphas, means, icf)", size, J, REFERENCE_GRADIENT);
    free(J);
#endif
    free(alphas);
    free(means);
    free(icf);
    free(x);
    return failures ? 1 : 0;
}
