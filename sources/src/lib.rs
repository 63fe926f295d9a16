//! Event sources that emit CloudEvents into a Broker: PingSource (cron), GitHubSource and
//! KafkaSource. Not built yet; the resource loader already recognises their manifests.
