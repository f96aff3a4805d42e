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

// sgd_step_multi: the same step for up to SGD_SLOTS tensors in one launch (PyTorch's foreach SGD),
// and each gradient is zeroed after it is read, so a training step needs no separate fill.
// Layout: slot k has its own param/grad/buffer arrays of n_k floats and its own weight decay;
// unused slots have n_k = 0 (their pointers are any valid buffer). Mapping: one work-item per
// element of the concatenation of the slots, in slot order; the work-item walks the slot sizes to
// find its tensor. No local memory.
#define SGD_SLOT_ARGS(k) __global float *p##k, __global float *g##k, __global float *b##k, const int n##k, const float wd##k,
#define SGD_SLOT(k)                                                                               \
    if (i < n##k) {                                                                               \
        sgd_one(p##k, g##k, b##k, i, wd##k, lr, momentum, dampening, nesterov, first_step);       \
        return;                                                                                   \
    }                                                                                             \
    i -= n##k;

inline void sgd_one(__global float *param, __global float *grad, __global float *buf, const int i, const float weight_decay,
                    const float lr, const float momentum, const float dampening, const int nesterov, const int first_step) {
    const float p = param[i];
    float d = grad[i] + weight_decay * p;
    grad[i] = 0.0f;
    if (momentum != 0.0f) {
        const float b = first_step ? d : momentum * buf[i] + (1.0f - dampening) * d;
        buf[i] = b;
        d = nesterov ? d + momentum * b : b;
    }
    param[i] = p - lr * d;
}

// 16 slots: 16 x (3 pointers + 2 scalars) + 5 scalars = 532 bytes of arguments, inside the 1024
// bytes every OpenCL 1.2 device must accept.
__kernel void sgd_step_multi(SGD_SLOT_ARGS(0) SGD_SLOT_ARGS(1) SGD_SLOT_ARGS(2) SGD_SLOT_ARGS(3)
                             SGD_SLOT_ARGS(4) SGD_SLOT_ARGS(5) SGD_SLOT_ARGS(6) SGD_SLOT_ARGS(7)
                             SGD_SLOT_ARGS(8) SGD_SLOT_ARGS(9) SGD_SLOT_ARGS(10) SGD_SLOT_ARGS(11)
                             SGD_SLOT_ARGS(12) SGD_SLOT_ARGS(13) SGD_SLOT_ARGS(14) SGD_SLOT_ARGS(15)
                             const float lr, const float momentum, const float dampening, const int nesterov, const int first_step) {
    int i = get_global_id(0);
    SGD_SLOT(0) SGD_SLOT(1) SGD_SLOT(2) SGD_SLOT(3) SGD_SLOT(4) SGD_SLOT(5) SGD_SLOT(6) SGD_SLOT(7)
    SGD_SLOT(8) SGD_SLOT(9) SGD_SLOT(10) SGD_SLOT(11) SGD_SLOT(12) SGD_SLOT(13) SGD_SLOT(14) SGD_SLOT(15)
}
