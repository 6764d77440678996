{{/* Name of the chart, overridable. */}}
{{- define "isthmus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Base name of every object: the release name, prefixed with the chart name unless it
     already contains it. Kept short: suffixes such as -network-manager are added. */}}
{{- define "isthmus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "isthmus.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "isthmus.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "isthmus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "isthmus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "gateway") */}}
{{- define "isthmus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "isthmus.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "isthmus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "isthmus.keySecret" -}}
{{- default (printf "%s-gateway-key" (include "isthmus.fullname" .)) .Values.gateway.keySecret }}
{{- end }}

{{- define "isthmus.publicKeyConfigMap" -}}
{{- default (printf "%s-gateway-pubkey" (include "isthmus.fullname" .)) .Values.gateway.publicKeyConfigMap }}
{{- end }}

{{- define "isthmus.leaseName" -}}
{{- default (printf "%s-gateway" (include "isthmus.fullname" .)) .Values.gateway.leaseName }}
{{- end }}

{{/* The values every cluster must choose; rendering stops with a message naming the first one
     missing. */}}
{{- define "isthmus.clusterID" -}}
{{- $id := required "clusterID is required: this cluster's ID, a DNS label unique among the peers (--set clusterID=...)" .Values.clusterID }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $id) }}
{{- fail (printf "clusterID %q is not a DNS label (lower-case letters, digits, '-', at most 63)" $id) }}
{{- end }}
{{- $id }}
{{- end }}

{{- define "isthmus.cidr" -}}
{{- if not (regexMatch "^([0-9]{1,3}\\.){3}[0-9]{1,3}/[0-9]{1,2}$" .value) }}
{{- fail (printf "%s %q is not an IPv4 CIDR (a.b.c.d/n)" .name .value) }}
{{- end }}
{{- .value }}
{{- end }}

{{- define "isthmus.commonEnv" -}}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- end }}

{{- define "isthmus.podSecurityContext" -}}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Prometheus scrape annotations of a pod template (metrics.annotations), given its metrics port.
*/}}
{{- define "isthmus.scrapeAnnotations" -}}
{{- if .ctx.Values.metrics.annotations }}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .port | quote }}
  prometheus.io/path: /metrics
{{- end }}
{{- end }}
