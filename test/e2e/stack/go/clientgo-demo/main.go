// clientgo-demo: a small client-go program for kubetrail's end-to-end tests (#19). It does what a
// controller or a script built on client-go does, and sends no Kubectl-Session: creates a few
// ConfigMaps, lists them a page at a time (protobuf), reads one, deletes them. One run is one command;
// kubetrail must give it one trace, named after this program.
//
//	clientgo-demo [-context NAME] [-n NAMESPACE] [-count N] [-limit N]    (KUBECONFIG names the cluster)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	kubeContext := flag.String("context", "", "kubeconfig context (default: its current context)")
	namespace := flag.String("n", "default", "namespace")
	count := flag.Int("count", 5, "ConfigMaps to create, list and delete")
	limit := flag.Int64("limit", 2, "items per list page")
	flag.Parse()
	if err := run(*kubeContext, *namespace, *count, *limit); err != nil {
		fmt.Fprintf(os.Stderr, "clientgo-demo: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeContext, namespace string, count int, limit int64) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	config, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return err
	}
	// As controllers do: protobuf for built-in types.
	config.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cms := client.CoreV1().ConfigMaps(namespace)
	selector := "app.kubernetes.io/managed-by=clientgo-demo"
	for i := 0; i < count; i++ {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("clientgo-demo-%d", i), Labels: map[string]string{"app.kubernetes.io/managed-by": "clientgo-demo"}},
			Data:       map[string]string{"index": fmt.Sprint(i)},
		}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	items, pages := 0, 0
	opts := metav1.ListOptions{LabelSelector: selector, Limit: limit}
	for {
		list, err := cms.List(ctx, opts)
		if err != nil {
			return err
		}
		items += len(list.Items)
		pages++
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	if _, err := cms.Get(ctx, "clientgo-demo-0", metav1.GetOptions{}); err != nil {
		return err
	}
	for i := 0; i < count; i++ {
		if err := cms.Delete(ctx, fmt.Sprintf("clientgo-demo-%d", i), metav1.DeleteOptions{}); err != nil {
			return err
		}
	}
	fmt.Printf("listed %d configmaps in %d pages\n", items, pages)
	return nil
}
