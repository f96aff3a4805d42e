// optim.cl: one in-place SGD step with momentum, PyTorch's torch.optim.SGD rule (see SGEReference/Optim.swift):
//   d = g + wd p;  if momentum != 0: buf = first ? d : momentum buf + (1 - dampening) d,
//                                    d = nesterov ? d + momentum buf : buf;   p -= lr d
// With momentum == 0 the buffer is not touched.
// Layout: param, grad, momentum buffer are flat arrays of n floats (any tensor shape).
// Mapping: one work-item per element, bound-checked. No local memory.

__kernel void sgd_step(__global float *param, __global const float *grad, __global float *buf, const int n,
                       const float lr, const float momentum, const float dampening, const float weight_decay,
                       const int nesterov, const int first_step) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float p = param[i];
    float d = grad[i] + weight_decay * p;
    if (momentum != 0.0f) {
        const float b = first_step ? d : momentum * buf[i] + (1.0f - dampening) * d;
        buf[i] = b;
        d = nesterov ? d + momentum * b : b;
    }
    param[i] = p - lr * d;
}
