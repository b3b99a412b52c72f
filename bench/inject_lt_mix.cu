// Known numbers of cuBLASLt bf16 and fp8 (e4m3) matrix products, for the injection library's proof:
// a plain C++/CUDA program that knows nothing of the exporter, started with only
// CUDA_INJECTION64_PATH set. Each step runs BF16 bf16 products then FP8 fp8 products (M=N=K=SIZE).
//   nvcc -O2 -o lt_mix bench/inject_lt_mix.cu -lcublasLt && ./lt_mix STEPS BF16 FP8 [SIZE]
// Prints one JSON line with the launch counts it made.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdlib>

#define CHECK(x) do { auto s_ = (x); if ((int)s_ != 0) { fprintf(stderr, "%s:%d %s -> %d\n", __FILE__, __LINE__, #x, (int)s_); exit(1); } } while (0)

struct Product {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    void *A, *B, *C;
};

static Product make(int n, cudaDataType_t in, size_t in_bytes) {
    Product p;
    cublasOperation_t t = CUBLAS_OP_T, nop = CUBLAS_OP_N;
    CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));  // TN: what fp8 needs
    CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &nop, sizeof nop));
    CHECK(cublasLtMatrixLayoutCreate(&p.a, in, n, n, n));
    CHECK(cublasLtMatrixLayoutCreate(&p.b, in, n, n, n));
    CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, n, n, n));
    CHECK(cudaMalloc(&p.A, (size_t)n * n * in_bytes));
    CHECK(cudaMalloc(&p.B, (size_t)n * n * in_bytes));
    CHECK(cudaMalloc(&p.C, (size_t)n * n * 2));
    CHECK(cudaMemset(p.A, 0, (size_t)n * n * in_bytes));
    CHECK(cudaMemset(p.B, 0, (size_t)n * n * in_bytes));
    return p;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: lt_mix STEPS BF16 FP8 [SIZE]\n"); return 2; }
    long steps = atol(argv[1]);
    int bf16 = atoi(argv[2]), fp8 = atoi(argv[3]), n = argc > 4 ? atoi(argv[4]) : 1024;
    cublasLtHandle_t lt;
    CHECK(cublasLtCreate(&lt));
    Product p16 = make(n, CUDA_R_16BF, 2), p8 = make(n, CUDA_R_8F_E4M3, 1);
    size_t workspace_bytes = 32u << 20;
    void *workspace;
    CHECK(cudaMalloc(&workspace, workspace_bytes));
    float alpha = 1.0f, beta = 0.0f;
    long launched16 = 0, launched8 = 0;
    for (long s = 0; s < steps; s++) {
        for (int i = 0; i < bf16; i++, launched16++)
            CHECK(cublasLtMatmul(lt, p16.desc, &alpha, p16.A, p16.a, p16.B, p16.b, &beta, p16.C, p16.c, p16.C, p16.c,
                                 nullptr, workspace, workspace_bytes, 0));
        for (int i = 0; i < fp8; i++, launched8++)
            CHECK(cublasLtMatmul(lt, p8.desc, &alpha, p8.A, p8.a, p8.B, p8.b, &beta, p8.C, p8.c, p8.C, p8.c,
                                 nullptr, workspace, workspace_bytes, 0));
        if (s % 64 == 0) CHECK(cudaDeviceSynchronize());
    }
    CHECK(cudaDeviceSynchronize());
    printf("{\"steps\": %ld, \"bf16_launches\": %ld, \"fp8_launches\": %ld, \"size\": %d}\n", steps, launched16,
           launched8, n);
    return 0;
}
