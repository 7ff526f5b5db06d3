{{/*
Naming and labels. Every object carries the app.kubernetes.io/* labels;
tier objects add app.kubernetes.io/component (edge, broker, router).
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "hawser.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name: fullnameOverride, or the release name when it
already contains the chart name, or "<release>-<chart>". Truncated to leave
room for the longest tier suffix ("-broker-headless", 16 characters).
*/}}
{{- define "hawser.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "hawser.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object. */}}
{{- define "hawser.labels" -}}
helm.sh/chart: {{ include "hawser.chart" . }}
{{ include "hawser.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hawser
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels shared by every object (stable across upgrades). */}}
{{- define "hawser.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hawser.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Tier helpers take a dict: (dict "root" $ "tier" "edge").
*/}}
{{- define "hawser.tier.fullname" -}}
{{- printf "%s-%s" (include "hawser.fullname" .root) .tier -}}
{{- end -}}

{{- define "hawser.tier.labels" -}}
{{ include "hawser.labels" .root }}
app.kubernetes.io/component: {{ .tier }}
{{- end -}}

{{- define "hawser.tier.selectorLabels" -}}
{{ include "hawser.selectorLabels" .root }}
app.kubernetes.io/component: {{ .tier }}
{{- end -}}

{{/* Common annotations block (metadata.annotations), or nothing. */}}
{{- define "hawser.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Service account name. */}}
{{- define "hawser.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hawser.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Container image reference. */}}
{{- define "hawser.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* In-cluster DNS names of the tier Services. */}}
{{- define "hawser.broker.headlessHost" -}}
{{- printf "%s-broker-headless.%s.svc.%s" (include "hawser.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{/* The broker set as every tier sees it: each address behind the broker
headless Service, re-resolved every cluster.dns_refresh_ms (docs/cluster.md). */}}
{{- define "hawser.broker.members" -}}
{{- printf "dns://%s:%d" (include "hawser.broker.headlessHost" .) (int .Values.broker.ports.inbox) -}}
{{- end -}}
{{- define "hawser.router.host" -}}
{{- printf "%s-router.%s.svc.%s" (include "hawser.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{- define "hawser.edge.host" -}}
{{- printf "%s-edge.%s.svc.%s" (include "hawser.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* Name of the ConfigMap holding hawser.yaml. */}}
{{- define "hawser.configName" -}}
{{- printf "%s-config" (include "hawser.fullname" .) -}}
{{- end -}}

{{/*
The hawser YAML config shared by every tier (each binary reads its own
sections; keys are those of libs/core/config.h, see docs/config.md).
Listener addresses, inbox URLs and peer lists are owned by the chart; the
rest comes from <tier>.config in values.
*/}}
{{- define "hawser.config" -}}
{{- $v := .Values -}}
{{- $edge := dict
    "mqtt_listen" (ternary (printf "0.0.0.0:%d" (int $v.edge.ports.mqtt)) "" $v.edge.listeners.mqtt)
    "ws_listen" (ternary (printf "0.0.0.0:%d" (int $v.edge.ports.ws)) "" $v.edge.listeners.ws)
    "mqtts_listen" (ternary (printf "0.0.0.0:%d" (int $v.edge.ports.mqtts)) "" (and $v.tls.enabled $v.edge.listeners.mqtts))
    "wss_listen" (ternary (printf "0.0.0.0:%d" (int $v.edge.ports.wss)) "" (and $v.tls.enabled $v.edge.listeners.wss))
    "http_listen" (printf "0.0.0.0:%d" (int $v.edge.ports.http))
    "listen" (printf "tcp://0.0.0.0:%d" (int $v.edge.ports.inbox))
    "brokers" (list (include "hawser.broker.members" .))
-}}
{{- if $v.tls.enabled -}}
{{- $_ := set $edge "tls_cert" "/etc/hawser/tls/tls.crt" -}}
{{- $_ := set $edge "tls_key" "/etc/hawser/tls/tls.key" -}}
{{- if $v.tls.ca -}}
{{- $_ := set $edge "tls_ca" "/etc/hawser/tls/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- $broker := dict
    "listen" (printf "tcp://0.0.0.0:%d" (int $v.broker.ports.inbox))
    "http_listen" (printf "0.0.0.0:%d" (int $v.broker.ports.http))
    "routers" (list (printf "tcp://%s:%d" (include "hawser.router.host" .) (int $v.router.ports.inbox)))
    "peers" (list (include "hawser.broker.members" .))
-}}
{{- $router := dict
    "listen" (printf "tcp://0.0.0.0:%d" (int $v.router.ports.inbox))
    "http_listen" (printf "0.0.0.0:%d" (int $v.router.ports.http))
    "brokers" (list (include "hawser.broker.members" .))
-}}
{{- $store := dict "backend" $v.store.backend -}}
{{- if and (eq $v.store.backend "redis") (not $v.store.redis.existingSecret) -}}
{{- $_ := set $store "redis_url" $v.store.redis.url -}}
{{- end -}}
{{- $cfg := dict
    "log" (dict "level" $v.logLevel)
    "edge" (merge $edge (deepCopy $v.edge.config))
    "broker" (merge $broker (deepCopy $v.broker.config))
    "router" (merge $router (deepCopy $v.router.config))
    "store" $store
    "cluster" (dict "member_down_ms" (int $v.cluster.memberDownMs) "dns_refresh_ms" (int $v.cluster.dnsRefreshMs))
-}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Environment shared by every tier: node id = pod name, POD_IP. */}}
{{- define "hawser.commonEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: HAWSER_NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{/* Pod-level settings shared by every tier; dict root, tier. */}}
{{- define "hawser.podCommon" -}}
{{- $root := .root -}}
{{- $t := index $root.Values .tier -}}
serviceAccountName: {{ include "hawser.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $t.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $t.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $t.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $t.affinity }}
affinity:
  {{- toYaml $t.affinity | nindent 2 }}
{{- else if eq $t.podAntiAffinityPreset "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "hawser.tier.selectorLabels" . | nindent 14 }}
{{- else if eq $t.podAntiAffinityPreset "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "hawser.tier.selectorLabels" . | nindent 12 }}
{{- end }}
{{- with $t.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod template metadata; dict root, tier. */}}
{{- define "hawser.podMetadata" -}}
{{- $root := .root -}}
{{- $t := index $root.Values .tier -}}
labels:
  {{- include "hawser.tier.labels" . | nindent 2 }}
  {{- with $t.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include "hawser.config" $root | sha256sum }}
  {{- with $t.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Health probes on the tier's HTTP port; dict root, tier. */}}
{{- define "hawser.probes" -}}
{{- $t := index .root.Values .tier -}}
{{- if $t.startupProbe.enabled }}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml (omit $t.startupProbe "enabled") | nindent 2 }}
{{- end }}
{{- if $t.livenessProbe.enabled }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml (omit $t.livenessProbe "enabled") | nindent 2 }}
{{- end }}
{{- if $t.readinessProbe.enabled }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  {{- toYaml (omit $t.readinessProbe "enabled") | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Volumes and mounts every tier has: the config file and a /tmp. */}}
{{- define "hawser.configVolume" -}}
- name: config
  configMap:
    name: {{ include "hawser.configName" . }}
- name: tmp
  emptyDir: {}
{{- end -}}
{{- define "hawser.configMount" -}}
- name: config
  mountPath: /etc/hawser/hawser.yaml
  subPath: hawser.yaml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* HorizontalPodAutoscaler for a tier; dict root, tier, metrics (list). */}}
{{- define "hawser.hpa" -}}
{{- $root := .root -}}
{{- $a := (index $root.Values .tier).autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "hawser.tier.fullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "hawser.tier.labels" . | nindent 4 }}
  {{- with (include "hawser.annotations" $root) }}{{ . | trim | nindent 2 }}{{ end }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "hawser.tier.fullname" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- toYaml .metrics | nindent 4 }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* PodDisruptionBudget for a tier; dict root, tier. */}}
{{- define "hawser.pdb" -}}
{{- $root := .root -}}
{{- $p := (index $root.Values .tier).pdb -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "hawser.tier.fullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "hawser.tier.labels" . | nindent 4 }}
  {{- with (include "hawser.annotations" $root) }}{{ . | trim | nindent 2 }}{{ end }}
spec:
  {{- if and $p.minAvailable (not $p.maxUnavailable) }}
  minAvailable: {{ $p.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $p.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "hawser.tier.selectorLabels" . | nindent 6 }}
{{- end -}}
