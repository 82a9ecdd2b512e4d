package main

func init() {
	register("k8s", k8sBench)
}

// k8sBench runs test/k8s's TestBenchK8s: it starts the single-node
// cluster (hack/kube-up.sh, waiting on /run/vc-kube.lock as test/k8s
// does), times pod starts and a 10-pod burst on vc beside runc, and vc's
// start from a factory's template and cache, then stops the cluster.
func k8sBench() ([]row, error) {
	return goTestBench("TestBenchK8s", "./test/k8s/")
}
