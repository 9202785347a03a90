{{/* Names and labels. */}}
{{- define "chatmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chatmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The gRPC services, in the order they are rendered. */}}
{{- define "chatmesh.grpcServices" -}}
chat presence search media notify
{{- end -}}

{{/* The package each `chatmesh serve <name>` runs. */}}
{{- define "chatmesh.package" -}}
{{- get (dict "chat" "chat_service" "presence" "presence_service" "gateway" "gateway_ws" "search" "search_service" "media" "media_service" "notify" "notify_service" "migrate" "chatmesh_launcher" "envoy" "envoy") . -}}
{{- end -}}

{{- define "chatmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "chatmesh.labels" -}}
{{ include "chatmesh.selectorLabels" . }}
app.kubernetes.io/part-of: chatmesh
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Every pod of the release (NetworkPolicy peers). */}}
{{- define "chatmesh.releaseSelector" -}}
app.kubernetes.io/name: {{ include "chatmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chatmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "chatmesh.secretName" -}}
{{- default (printf "%s-secrets" (include "chatmesh.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* host:port of a service's gRPC Service, as the other services dial it. */}}
{{- define "chatmesh.target" -}}
{{- $values := get .root.Values .name -}}
{{- printf "%s-%s:%v" (include "chatmesh.fullname" .root) .name $values.grpcPort -}}
{{- end -}}

{{- define "chatmesh.mode" -}}
{{- $values := get .root.Values .name -}}
{{- default .root.Values.mode $values.mode -}}
{{- end -}}

{{/* The non-secret environment of one component (dict root, name), as a YAML map: the data of
its ConfigMap. Each name is a setting of docs/settings.md. */}}
{{- define "chatmesh.env" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $v := $root.Values -}}
{{- $env := dict "CHATMESH_LOG_LEVEL" $v.logLevel "CHATMESH_ACCESS_LOG" (toString $v.accessLog) -}}
{{- $drain := toString $v.shutdown.drainSeconds -}}
{{- $grace := toString $v.shutdown.graceSeconds -}}
{{- $scylla := dict
  "CHATMESH_SCYLLA_CONTACT_POINTS" (join "," $v.scylla.contactPoints)
  "CHATMESH_SCYLLA_PORT" (toString $v.scylla.port)
  "CHATMESH_SCYLLA_DC" $v.scylla.datacenter
  "CHATMESH_SCYLLA_KEYSPACE" $v.scylla.keyspace
  "CHATMESH_SCYLLA_CONSISTENCY" $v.scylla.consistency -}}
{{- if $v.scylla.replication }}{{ $_ := set $scylla "CHATMESH_SCYLLA_REPLICATION" $v.scylla.replication }}{{ end -}}
{{- if $v.scylla.user }}{{ $_ := set $scylla "CHATMESH_SCYLLA_USER" $v.scylla.user }}{{ end -}}
{{- $nats := dict
  "CHATMESH_BUS" "nats"
  "CHATMESH_NATS_URLS" (join "," $v.nats.urls)
  "CHATMESH_NATS_STREAM_REPLICAS" (toString $v.nats.streamReplicas) -}}
{{- if $v.nats.user }}{{ $_ := set $nats "CHATMESH_NATS_USER" $v.nats.user }}{{ end -}}
{{- $identity := dict -}}
{{- if $v.identity.jwksUrl }}{{ $_ := set $identity "CHATMESH_JWT_JWKS_URL" $v.identity.jwksUrl }}{{ end -}}
{{- if $v.identity.issuer }}{{ $_ := set $identity "CHATMESH_JWT_ISSUER" $v.identity.issuer }}{{ end -}}
{{- if $v.identity.audience }}{{ $_ := set $identity "CHATMESH_JWT_AUDIENCE" $v.identity.audience }}{{ end -}}
{{- if $v.identity.algorithms }}{{ $_ := set $identity "CHATMESH_JWT_ALGORITHMS" (join "," $v.identity.algorithms) }}{{ end -}}
{{- $grpc := dict -}}
{{- if has $name (splitList " " (include "chatmesh.grpcServices" $root)) -}}
{{- $values := get $v $name -}}
{{- $grpc = dict
  "CHATMESH_MODE" (include "chatmesh.mode" (dict "root" $root "name" $name))
  "CHATMESH_GRPC_BIND" (printf "%s:%v" $v.listenHost $values.grpcPort)
  "CHATMESH_METRICS_HOST" $v.listenHost
  "CHATMESH_METRICS_PORT" (toString $values.metricsPort)
  "CHATMESH_DRAIN_S" $drain
  "CHATMESH_SHUTDOWN_GRACE_S" $grace -}}
{{- end -}}
{{- $chatTarget := include "chatmesh.target" (dict "root" $root "name" "chat") -}}
{{- if or (eq $name "chat") (eq $name "migrate") -}}
{{- $env = merge $env $scylla $nats (dict "CHATMESH_STORE" "scylla") -}}
{{- if eq $name "chat" -}}
{{- $env = merge $env $grpc $identity -}}
{{- $consumers := list -}}
{{- if $v.search.enabled }}{{ $consumers = append $consumers "search" }}{{ end -}}
{{- if $v.notify.enabled }}{{ $consumers = append $consumers "notify" }}{{ end -}}
{{- if $consumers }}{{ $_ := set $env "CHATMESH_NATS_CONSUMERS" (join "," $consumers) }}{{ end -}}
{{- if $v.media.enabled }}{{ $_ := set $env "CHATMESH_MEDIA_TARGET" (include "chatmesh.target" (dict "root" $root "name" "media")) }}{{ end -}}
{{- else -}}
{{- $_ := set $env "CHATMESH_MODE" $v.mode -}}
{{- end -}}
{{- else if eq $name "presence" -}}
{{- $env = merge $env $grpc $nats $identity (dict "CHATMESH_PRESENCE_BACKEND" "redis" "CHATMESH_CHAT_TARGET" $chatTarget) -}}
{{- else if eq $name "search" -}}
{{- $env = merge $env $grpc $nats (dict "CHATMESH_SEARCH_INDEX" "/var/lib/chatmesh/search.db" "CHATMESH_CHAT_TARGET" $chatTarget) -}}
{{- else if eq $name "media" -}}
{{- $env = merge $env $grpc $nats $scylla (dict
  "CHATMESH_MEDIA_RECORDS_STORE" "scylla"
  "CHATMESH_MEDIA_BLOBS" "s3"
  "CHATMESH_S3_ENDPOINT" $v.s3.endpoint
  "CHATMESH_S3_REGION" $v.s3.region
  "CHATMESH_S3_BUCKET" $v.s3.bucket
  "CHATMESH_CHAT_TARGET" $chatTarget) -}}
{{- if $v.media.clamd }}{{ $_ := set $env "CHATMESH_MEDIA_CLAMD" $v.media.clamd }}{{ end -}}
{{- else if eq $name "notify" -}}
{{- $n := $v.notify -}}
{{- $env = merge $env $grpc $nats $identity (dict
  "CHATMESH_NOTIFY_DB" "/var/lib/chatmesh/notify.db"
  "CHATMESH_CHAT_TARGET" $chatTarget
  "CHATMESH_PRESENCE_TARGET" (include "chatmesh.target" (dict "root" $root "name" "presence"))) -}}
{{- if $n.apns.enabled -}}
{{- $_ := set $env "CHATMESH_APNS_TEAM_ID" $n.apns.teamId -}}
{{- $_ := set $env "CHATMESH_APNS_KEY_ID" $n.apns.keyId -}}
{{- $_ := set $env "CHATMESH_APNS_TOPIC" $n.apns.topic -}}
{{- $_ := set $env "CHATMESH_APNS_KEY_FILE" "/etc/chatmesh/push/apns-key.p8" -}}
{{- if $n.apns.url }}{{ $_ := set $env "CHATMESH_APNS_URL" $n.apns.url }}{{ end -}}
{{- end -}}
{{- if $n.fcm.enabled -}}
{{- $_ := set $env "CHATMESH_FCM_SERVICE_ACCOUNT_FILE" "/etc/chatmesh/push/fcm-service-account.json" -}}
{{- end -}}
{{- if $n.webpush.enabled -}}
{{- $_ := set $env "CHATMESH_VAPID_KEY_FILE" "/etc/chatmesh/push/vapid-key.pem" -}}
{{- $_ := set $env "CHATMESH_VAPID_SUBJECT" $n.webpush.subject -}}
{{- end -}}
{{- else if eq $name "gateway" -}}
{{- $g := $v.gateway -}}
{{- $env = merge $env $identity (dict
  "CHATMESH_WS_HOST" $v.listenHost
  "CHATMESH_WS_PORT" (toString $g.wsPort)
  "CHATMESH_WS_METRICS_HOST" $v.listenHost
  "CHATMESH_WS_METRICS_PORT" (toString $g.metricsPort)
  "CHATMESH_WS_CLOSE_TIMEOUT_S" $grace
  "CHATMESH_DRAIN_S" $drain
  "CHATMESH_CHAT_TARGET" $chatTarget) -}}
{{- range $other := list "presence" "media" "search" "notify" -}}
{{- if (get $v $other).enabled -}}
{{- $_ := set $env (printf "CHATMESH_%s_TARGET" (upper $other)) (include "chatmesh.target" (dict "root" $root "name" $other)) -}}
{{- end -}}
{{- end -}}
{{- if $g.allowedOrigins }}{{ $_ := set $env "CHATMESH_WS_ALLOWED_ORIGINS" (join "," $g.allowedOrigins) }}{{ end -}}
{{- if $v.envoy.enabled -}}
{{- /* Behind Envoy every socket's peer address is an Envoy pod's: per-address caps would
limit all apps together, so they are off (`gateway.env` can set them again). */ -}}
{{- $_ := set $env "CHATMESH_WS_MAX_SOCKETS_PER_IP" "0" -}}
{{- $_ := set $env "CHATMESH_WS_AUTH_FAILURES_PER_MIN" "0" -}}
{{- end -}}
{{- end -}}
{{- if and $v.tls.enabled (ne $name "migrate") -}}
{{- /* The files of the tls Secret (deployments.yaml mounts it); migrate dials only CQL. */ -}}
{{- $_ := set $env "CHATMESH_TLS_CERT_FILE" "/etc/chatmesh/tls/tls.crt" -}}
{{- $_ := set $env "CHATMESH_TLS_KEY_FILE" "/etc/chatmesh/tls/tls.key" -}}
{{- $_ := set $env "CHATMESH_TLS_CA_FILE" "/etc/chatmesh/tls/ca.crt" -}}
{{- $_ := set $env "CHATMESH_TLS_CLIENT_AUTH" (toString $v.tls.clientAuth) -}}
{{- end -}}
{{- $extra := dict -}}
{{- if ne $name "migrate" -}}
{{- range $key, $value := (get $v $name).env -}}
{{- $_ := set $extra $key (toString $value) -}}
{{- end -}}
{{- end -}}
{{- toYaml (mergeOverwrite $env $extra) -}}
{{- end -}}

{{/* A secret key as one env entry (dict name key optional root). */}}
{{- define "chatmesh.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "chatmesh.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* The secret environment of one component (dict root, name): a list of env entries. */}}
{{- define "chatmesh.secretEnvs" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $v := $root.Values -}}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_JWT_SECRET" "key" "jwt-secret") }}
{{- if not (has $name (list "gateway" "migrate")) }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_SERVICE_SECRET" "key" "service-secret") }}
{{- end }}
{{- if has $name (list "chat" "migrate" "media") }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_SCYLLA_PASSWORD" "key" "scylla-password" "optional" true) }}
{{- end }}
{{- if not (has $name (list "gateway" "migrate")) }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_NATS_PASSWORD" "key" "nats-password" "optional" true) }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_NATS_TOKEN" "key" "nats-token" "optional" true) }}
{{- end }}
{{- if eq $name "presence" }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_REDIS_URL" "key" "redis-url") }}
{{- end }}
{{- if eq $name "media" }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_S3_ACCESS_KEY" "key" "s3-access-key" "optional" true) }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_S3_SECRET_KEY" "key" "s3-secret-key" "optional" true) }}
{{- end }}
{{- if eq $name "notify" }}
{{ include "chatmesh.secretEnv" (dict "root" $root "name" "CHATMESH_WEBHOOK_SECRET" "key" "webhook-secret" "optional" true) }}
{{- end }}
{{- end -}}

{{/* Pod-level scheduling of one component: its own settings, else the shared ones. */}}
{{- define "chatmesh.scheduling" -}}
{{- $values := .values -}}
{{- $v := .root.Values -}}
{{- with (default $v.nodeSelector $values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $v.tolerations $values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $v.affinity $values.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "chatmesh.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- add (mul 2 $s.drainSeconds) $s.graceSeconds $s.slackSeconds -}}
{{- end -}}
