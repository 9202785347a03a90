import java.nio.file.Path;
import java.nio.file.Paths;
import org.apache.solr.cloud.MiniSolrCloudCluster;
import org.apache.solr.embedded.JettyConfig;

/**
 * A one-node SolrCloud for chatmesh's tests: Solr on the given port, an embedded ZooKeeper,
 * state under the given base dir, and the given configset uploaded under the given name.
 *
 * <p>Prints "SOLR_READY <base url> <zk address>" once requests can be served; SIGTERM shuts
 * the node and ZooKeeper down. A failed start exits with status 1 (ZooKeeper's threads would
 * otherwise keep the JVM alive). Usage: SolrCloudMain PORT BASE_DIR CONFIGSET_DIR CONFIGSET_NAME
 */
public final class SolrCloudMain {
  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    Path baseDir = Paths.get(args[1]);
    Path configDir = Paths.get(args[2]);
    String configName = args[3];
    MiniSolrCloudCluster cluster;
    try {
      JettyConfig jetty = JettyConfig.builder().setPort(port).build();
      cluster =
          new MiniSolrCloudCluster(1, baseDir, MiniSolrCloudCluster.DEFAULT_CLOUD_SOLR_XML, jetty);
      cluster.uploadConfigSet(configDir, configName);
    } catch (Throwable e) {
      e.printStackTrace();
      System.out.println("SOLR_FAILED " + e);
      System.out.flush();
      Runtime.getRuntime().halt(1);
      return;
    }
    MiniSolrCloudCluster running = cluster;
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  try {
                    running.shutdown();
                  } catch (Exception e) {
                    e.printStackTrace();
                  }
                }));
    System.out.println(
        "SOLR_READY "
            + running.getJettySolrRunner(0).getBaseUrl()
            + " "
            + running.getZkServer().getZkAddress());
    System.out.flush();
    Thread.currentThread().join();
  }
}
