"""harness: a TensorFlow 2 research harness for recurrent networks, instrumented with TensorBoard."""
