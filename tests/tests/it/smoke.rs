use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use sluice_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_through_gateway() {
    init_logging();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let bootstrap = gw.kafka_addr().to_string();
    let producer: FutureProducer = client_config(&bootstrap).create().unwrap();
    for i in 0..10 {
        producer
            .send(
                FutureRecord::to("smoke")
                    .key(&format!("k{i}"))
                    .payload(&format!("v{i}")),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let consumer: StreamConsumer = consumer_config(&bootstrap, "smoke-g").create().unwrap();
    consumer.subscribe(&["smoke"]).unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
    }
    got.sort();
    assert_eq!(got.len(), 10);
    // Clients first: librdkafka's close talks to the brokers.
    eprintln!("dropping consumer");
    drop(consumer);
    eprintln!("dropping producer");
    drop(producer);
    eprintln!("shutdown");
    gw.shutdown().await;
    eprintln!("done");
}
