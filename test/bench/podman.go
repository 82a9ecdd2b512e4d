package main

func init() {
	register("podman", podmanBench)
}

// podmanBench runs test/runtime's TestBenchPodmanRun (it needs that
// harness: vc-runtime beside the agent under test, the guest image, the
// images loaded into podman) and reads the BENCH lines it prints.
func podmanBench() ([]row, error) {
	return goTestBench("TestBenchPodmanRun", "./test/runtime/")
}
