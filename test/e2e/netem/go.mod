module kubetrail.dev/e2e/netem

go 1.26.0
