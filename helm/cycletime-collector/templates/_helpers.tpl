{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "cycletime-collector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "cycletime-collector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cycletime-collector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cycletime-collector.labels" -}}
helm.sh/chart: {{ include "cycletime-collector.chart" . }}
{{ include "cycletime-collector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cycletime-collector
{{- end }}

{{- define "cycletime-collector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cycletime-collector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The collector pods' labels a selector matches: with sharding, the StatefulSet's pods only (not the backfill Job's). */}}
{{- define "cycletime-collector.podSelectorLabels" -}}
{{ include "cycletime-collector.selectorLabels" . }}
{{- if .Values.sharding.enabled }}
app.kubernetes.io/component: shard
{{- end }}
{{- end }}

{{/* The headless Service that governs the StatefulSet: one DNS name per shard, <fullname>-<i>.<this>. */}}
{{- define "cycletime-collector.headlessName" -}}
{{- printf "%s-headless" (include "cycletime-collector.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cycletime-collector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cycletime-collector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An external PostgreSQL store is configured. */}}
{{- define "cycletime-collector.usesPostgres" -}}
{{- if or .Values.postgresql.url .Values.postgresql.existingSecret }}true{{ end }}
{{- end }}

{{/* The SQLite store lives on a PersistentVolumeClaim (created or existing). */}}
{{- define "cycletime-collector.usesPVC" -}}
{{- if and (not (include "cycletime-collector.usesPostgres" .)) .Values.persistence.enabled }}true{{ end }}
{{- end }}

{{- define "cycletime-collector.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "cycletime-collector.fullname" .)) }}
{{- end }}

{{/* The chart creates a Secret when it has something to hold: tokens (without existingSecret) or the PostgreSQL URL. */}}
{{- define "cycletime-collector.createSecret" -}}
{{- if or (and (not .Values.secret.existingSecret) .Values.secret.tokens) .Values.postgresql.url }}true{{ end }}
{{- end }}

{{- define "cycletime-collector.secretName" -}}
{{- printf "%s-secrets" (include "cycletime-collector.fullname" .) }}
{{- end }}

{{/* The Secret whose keys become environment variables (tokens). */}}
{{- define "cycletime-collector.envSecretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else if include "cycletime-collector.createSecret" . }}
{{- include "cycletime-collector.secretName" . }}
{{- end }}
{{- end }}

{{/* The store URL written into config.yaml. */}}
{{- define "cycletime-collector.storeUrl" -}}
{{- if include "cycletime-collector.usesPostgres" . }}
{{- print "${CYCLETIME_STORE_URL}" }}
{{- else }}
{{- /* four slashes: an absolute path for SQLAlchemy */ -}}
{{- printf "sqlite:///%s/cycletime.db" (.Values.persistence.mountPath | trimSuffix "/") }}
{{- end }}
{{- end }}

{{- define "cycletime-collector.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The collector serves HTTPS when the config sets web.tls. */}}
{{- define "cycletime-collector.tls" -}}
{{- if dig "web" "tls" "" (.Values.config | default dict) }}true{{ end }}
{{- end }}

{{/* A probe from the values; an HTTP probe without its own scheme follows web.tls. Call with (list $ probe). */}}
{{- define "cycletime-collector.probe" -}}
{{- $probe := deepCopy (index . 1) }}
{{- if and (include "cycletime-collector.tls" (index . 0)) $probe.httpGet (not $probe.httpGet.scheme) }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/* What the schema enforces, again for installs that skip schema validation. */}}
{{- define "cycletime-collector.validate" -}}
{{- if not .Values.config.sources }}
{{- fail "config.sources is empty: the collector needs at least one source and would refuse to start. Supply them with -f or --set-json, as in the chart README (section \"Sources\")." }}
{{- end }}
{{- if and .Values.sharding.enabled (not (include "cycletime-collector.usesPostgres" .)) }}
{{- fail "sharding.enabled needs a PostgreSQL store (postgresql.url or postgresql.existingSecret): the shards share one store, and SQLite on a volume cannot be shared. See the chart README (section \"Sharding\")." }}
{{- end }}
{{- end }}

{{/* Config paths holding a literal secret instead of a ${ENV} reference, one per line (values never printed). */}}
{{- define "cycletime-collector.literalSecrets" -}}
{{- $reference := "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" }}
{{- range $i, $source := .Values.config.sources }}
{{- if and $source.token (not (regexMatch $reference (toString $source.token))) }}
{{ printf "config.sources[%d].token (source %s)" $i (toString $source.name) }}
{{- end }}
{{- end }}
{{- $password := dig "web" "basic_auth" "password" "" .Values.config }}
{{- if and $password (not (regexMatch $reference (toString $password))) }}
{{ print "config.web.basic_auth.password" }}
{{- end }}
{{- end }}
