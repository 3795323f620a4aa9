"""harness: a TensorFlow 2 research harness for recurrent networks, instrumented with TensorBoard."""

import setuptools

setuptools.setup(
    name='harness',
    version='0.1.0',
    description='Train and compare RNN, GRU and LSTM models on sequence tasks, with TensorBoard instrumentation.',
    packages=setuptools.find_packages(include=['harness', 'harness.*']),
    # The fused CPU LSTM and GRU ops' sources: harness.fused_ops compiles them on first use.
    package_data={'harness': ['sample_data/mnist_sample/*', 'kernels/*.cc', 'kernels/*.h']},
    python_requires='>=3.10',
    # Lower bounds are the versions tested (BUILD.md); constraints.txt pins every package exactly.
    install_requires=[
        'tensorflow>=2.21',
        'keras>=3.15',
        'tensorflow-datasets>=4.9.10',
        'importlib_resources>=6.0',  # tfds 4.9.10 imports it to download, without declaring it.
        'tensorboard>=2.21',
        'absl-py>=2.1',
        'numpy>=2.0',
        'matplotlib>=3.8',
        'pillow>=10.0',  # PNG-encodes images when IDX files are imported (matplotlib needs it too).
        # oneDNN (library and headers) for the fused CPU ops (harness.fused_ops, which links libdnnl.so.3:
        # oneDNN 3.x); elsewhere LSTMs run BlockLSTM and GRUs Keras's loop.
        'onednn-cpu-gomp>=2023.2,<2026; platform_system == "Linux" and platform_machine == "x86_64"',
        'onednn-devel-cpu-gomp>=2023.2,<2026; platform_system == "Linux" and platform_machine == "x86_64"',
    ],
    extras_require={
        'test': ['pytest>=8.0'],
        'profile': ['tensorboard-plugin-profile>=2.15'],
        'bench': ['torch>=2.0'],  # CPU-only machines: pip install torch==2.13.0 (BUILD.md).
    },
    entry_points={'console_scripts': [
        'harness-train=harness.train:run',
        'harness-sweep=harness.sweep:run',
        'harness-bench=harness.bench:run',
        'harness-data=harness.data:run',
    ]},
)
