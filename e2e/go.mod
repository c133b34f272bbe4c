module github.com/lethe-privacy/lethe/e2e

go 1.26.0

require (
	github.com/jackc/pgx/v5 v5.13.0
	github.com/lethe-privacy/lethe/erasectl v0.0.0
	github.com/lethe-privacy/lethe/lib v0.0.0
	github.com/lethe-privacy/lethe/proto v0.0.0
	github.com/lethe-privacy/lethe/services/backups v0.0.0
	github.com/lethe-privacy/lethe/services/billing v0.0.0
	github.com/lethe-privacy/lethe/services/contacts v0.0.0
	github.com/lethe-privacy/lethe/services/coordinator v0.0.0
	github.com/lethe-privacy/lethe/services/logs v0.0.0
	github.com/nats-io/nats.go v1.55.0
	github.com/prometheus/client_golang v1.25.0
	github.com/redis/go-redis/v9 v9.23.0
	go.uber.org/zap v1.28.0
	google.golang.org/protobuf v1.36.12
)

require (
	dario.cat/mergo v1.0.1 // indirect
	github.com/Masterminds/goutils v1.1.1 // indirect
	github.com/Masterminds/semver/v3 v3.3.0 // indirect
	github.com/Masterminds/sprig/v3 v3.3.0 // indirect
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/huandu/xstrings v1.5.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/jackc/tern/v2 v2.3.4 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/mitchellh/copystructure v1.2.0 // indirect
	github.com/mitchellh/reflectwalk v1.0.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nats-server/v2 v2.15.3 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/shopspring/decimal v1.4.0 // indirect
	github.com/spf13/cast v1.7.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace (
	github.com/lethe-privacy/lethe/erasectl => ../erasectl
	github.com/lethe-privacy/lethe/lib => ../lib
	github.com/lethe-privacy/lethe/proto => ../proto
	github.com/lethe-privacy/lethe/services/backups => ../services/backups
	github.com/lethe-privacy/lethe/services/billing => ../services/billing
	github.com/lethe-privacy/lethe/services/contacts => ../services/contacts
	github.com/lethe-privacy/lethe/services/coordinator => ../services/coordinator
	github.com/lethe-privacy/lethe/services/logs => ../services/logs
)
