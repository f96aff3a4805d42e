// batchnorm_prelude.cl: prepended to batchnorm.cl, batchnorm_cpu.cl and batchnorm_gpu.cl (Kernels.swift).
// Maths (see SGEReference/BatchNorm.swift): per channel c over its M = N*H*W values,
//   training: mean = sum x / M, var = sum (x - mean)^2 / M (two passes, no E[x^2]-E[x]^2 cancellation),
//             running_mean = (1-m) running_mean + m mean, running_var = (1-m) running_var + m var M/(M-1)
//   eval:     mean, var = running statistics
//   y = gamma (x - mean) invstd + beta, invstd = 1/sqrt(var + eps)
//   backward: dbeta += sum g, dgamma += sum g xhat,
//             dx = gamma invstd / M (M g - sum g - xhat sum g xhat)   (training) or gamma invstd g (eval)
// Layout: x, y, grads are [N, C, H, W]; gamma, beta, running stats, mean, invstd are [C].

// BN_RELU=1 fuses the ReLU that follows the BatchNorm (BN+ReLU in one pass): forward writes
// max(y, 0) (relu_forward's expression), backward masks grad_out where the fused output y_relu was
// not positive (relu_backward's rule) while reading it. BN_RELU=0 ignores y_relu.
#ifndef BN_RELU
#define BN_RELU 0
#endif
#if BN_RELU
#define BN_OUT(v) fmax((v), 0.0f)
#define BN_GRAD(j) (y_relu[j] > 0.0f ? grad_out[j] : 0.0f)
#else
#define BN_OUT(v) (v)
#define BN_GRAD(j) grad_out[j]
#endif
