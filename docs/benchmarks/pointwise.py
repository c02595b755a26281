# ConvMixer's pointwise (1x1) conv as oneDNN's conv vs a linear layer over the channels-last view: forward + backward,
# bf16, batch 64, 256 channels, 22x22.  Run: python docs/benchmarks/pointwise.py [threads]  (raw output: docs/benchmarks.md)
import time, torch, torch.nn.functional as F, sys
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv)>1 else 1)
N,C,H=64,256,22
x = torch.randn(N,C,H,H).contiguous(memory_format=torch.channels_last).bfloat16().requires_grad_()
w = torch.randn(C,C,1,1, requires_grad=True)
b = torch.randn(C, requires_grad=True)
def conv():
    y = F.conv2d(x, w.bfloat16(), b.bfloat16()); y.backward(torch.ones_like(y))
def lin():
    xl = x.permute(0,2,3,1)
    y = F.linear(xl, w.view(C,C).bfloat16(), b.bfloat16()).permute(0,3,1,2); y.backward(torch.ones_like(y))
def t(f, n=10):
    f(); f()
    s=time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter()-s)/n*1000
for _ in range(2):
    print("conv1x1 %.1f ms   linear %.1f ms" % (t(conv), t(lin)))
