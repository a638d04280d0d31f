{{/* Chart name. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name, the StatefulSet's (and so the pods' prefix). At most 52
characters: pod names get a controller-revision-hash label that must stay within 63.
*/}}
{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: peer discovery, the pods' stable DNS names. */}}
{{- define "weir.headlessName" -}}
{{- printf "%s-headless" (include "weir.fullname" .) -}}
{{- end -}}

{{- define "weir.configName" -}}
{{- printf "%s-config" (include "weir.fullname" .) -}}
{{- end -}}

{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end -}}

{{/* Labels of every object but the component one. */}}
{{- define "weir.baseLabels" -}}
helm.sh/chart: {{ include "weir.chart" . }}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "weir.labels" -}}
{{ include "weir.baseLabels" . }}
app.kubernetes.io/component: broker
{{- end -}}

{{- define "weir.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The client gRPC port inside the pods (WEIR_LISTEN), also used by peers. */}}
{{- define "weir.grpcPort" -}}9292{{- end -}}
{{- define "weir.adminPort" -}}9293{{- end -}}
{{/* The Kafka listener's port inside the pods (WEIR_KAFKA_LISTEN). */}}
{{- define "weir.kafkaPort" -}}9092{{- end -}}
{{/* The AMQP listener's port inside the pods: amqps (5671, WEIR_AMQPS_LISTEN) with TLS
on, else plaintext 5672 (WEIR_AMQP_LISTEN), RabbitMQ's ports. */}}
{{- define "weir.amqpPort" -}}
{{- if (((.Values.security | default dict).tls | default dict).enabled) -}}5671{{- else -}}5672{{- end -}}
{{- end -}}
{{/* The client Service's AMQP port: service.amqpPort, else the pods' port. */}}
{{- define "weir.serviceAmqpPort" -}}
{{- .Values.service.amqpPort | default (include "weir.amqpPort" .) -}}
{{- end -}}

{{/* Refuses values that cannot make a working cluster. */}}
{{- define "weir.checkValues" -}}
{{- $replicas := int .Values.replicas -}}
{{- $voters := int .Values.voters -}}
{{- if lt $replicas 1 -}}
{{- fail (printf "replicas must be at least 1 (got %d)" $replicas) -}}
{{- end -}}
{{- if or (lt $voters 1) (gt $voters 9) -}}
{{- fail (printf "voters must be 1 to 9 (got %d)" $voters) -}}
{{- end -}}
{{- if gt $voters $replicas -}}
{{- fail (printf "voters (%d) must not exceed replicas (%d): every voter is a pod, and pods beyond the voters are observers" $voters $replicas) -}}
{{- end -}}
{{- $security := .Values.security | default dict -}}
{{- $tls := $security.tls | default dict -}}
{{- if and $tls.enabled (not $tls.secretName) -}}
{{- fail "security.tls.enabled needs security.tls.secretName: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt" -}}
{{- end -}}
{{- if and (eq ($security.authentication | default "optional") "required") (not $tls.enabled) -}}
{{- fail "security.authentication required needs security.tls.enabled: passwords are sent over TLS only" -}}
{{- end -}}
{{- if not (has .Values.podAntiAffinity (list "hard" "soft" "none")) -}}
{{- fail (printf "podAntiAffinity must be hard, soft or none (got %q)" .Values.podAntiAffinity) -}}
{{- end -}}
{{- end -}}

{{/*
WEIR_CONTROLLER_VOTERS: pods 0 .. voters-1 by their stable DNS names in the release
namespace, e.g. 0@weir-0.weir-headless.NS.svc.cluster.local:9292,1@...,2@...
Pods with a higher ordinal (replicas > voters) are observers.
*/}}
{{- define "weir.controllerVoters" -}}
{{- $fullname := include "weir.fullname" . -}}
{{- $headless := include "weir.headlessName" . -}}
{{- $port := include "weir.grpcPort" . -}}
{{- $voters := list -}}
{{- range $id := until (int .Values.voters) -}}
{{- $voters = append $voters (printf "%d@%s-%d.%s.%s.svc.%s:%s" $id $fullname $id $headless $.Release.Namespace $.Values.clusterDomain $port) -}}
{{- end -}}
{{- join "," $voters -}}
{{- end -}}

{{/* Where the TLS Secret is mounted in the pods. */}}
{{- define "weir.tlsDir" -}}/etc/weir/tls{{- end -}}

{{/* security.authorization as the broker takes it: on or off (a YAML boolean too). */}}
{{- define "weir.authorization" -}}
{{- $value := (.Values.security | default dict).authorization -}}
{{- if kindIs "bool" $value -}}{{ ternary "on" "off" $value }}{{- else -}}{{ $value | default "off" }}{{- end -}}
{{- end -}}
