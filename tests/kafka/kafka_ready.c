// kafka_ready: exits 0 once the Kafka cluster at argv[1] answers a metadata
// request naming at least one broker, 1 when argv[2] milliseconds pass
// first. scripts/kafka.sh builds it into its cache directory and uses it as
// the readiness check (a real request, not a log line).
//
//   kafka_ready 127.0.0.1:9092 30000

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long kr_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	char                          errstr[256];
	rd_kafka_conf_t              *conf;
	rd_kafka_t                   *rk;
	const struct rd_kafka_metadata *md = NULL;
	long long                     deadline;
	int                           rc = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: kafka_ready BOOTSTRAP TIMEOUT_MS\n");
		return 2;
	}
	deadline = kr_now_ms() + atoll(argv[2]);
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof(errstr)) !=
	        RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "200", errstr, sizeof(errstr)) !=
	        RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka_ready: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 2;
	}
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
		fprintf(stderr, "kafka_ready: %s\n", errstr);
		return 2;
	}
	while (kr_now_ms() < deadline) {
		long long left = deadline - kr_now_ms();
		int       wait = left > 1000 ? 1000 : (int)left;

		if (wait <= 0)
			break;
		if (rd_kafka_metadata(rk, 1, NULL, &md, wait) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			int brokers = md->broker_cnt;

			rd_kafka_metadata_destroy(md);
			if (brokers > 0) {
				rc = 0;
				break;
			}
		}
		rd_kafka_poll(rk, 100);
	}
	rd_kafka_destroy(rk);
	return rc;
}
