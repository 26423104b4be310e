/* darknet_parity/compare.py's probe: DUMP CFG WEIGHTS IMAGE OUTDIR THRESH HIER writes the letterboxed input and every layer's
   output as float32 files and prints detector test's detections (get_network_boxes + do_nms_sort, nms .45). */
#include "darknet.h"
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include "blas.h"
#include "activations.h"
/* dump CFG WEIGHTS IMAGE OUTDIR THRESH HIER: the letterboxed input, every layer's output, the detections. */
static void write_floats(const char *dir, const char *name, float *x, int n){
    char path[1024]; snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb"); fwrite(x, sizeof(float), n, f); fclose(f);
}
int main(int argc, char **argv){
    if(argc < 7){ fprintf(stderr, "usage: dump cfg weights image outdir thresh hier\n"); return 1; }
    float thresh = atof(argv[5]), hier = atof(argv[6]);
    network *net = load_network(argv[1], argv[2], 0);
    set_batch_network(net, 1);
    image im = load_image_color(argv[3], 0, 0);
    image sized = letterbox_image(im, net->w, net->h);
    write_floats(argv[4], "input.bin", sized.data, sized.w*sized.h*sized.c);
    network_predict(net, sized.data);
    int i, j;
    for(i = 0; i < net->n; ++i){
        char name[64]; snprintf(name, sizeof name, "layer_%03d.bin", i);
        write_floats(argv[4], name, net->layers[i].output, net->layers[i].outputs);
    }
    layer l = net->layers[net->n-1];
    if(l.type == REGION && l.softmax_tree){
        /* darknet's GPU semantics (the CPU path mis-indexes the tree): per anchor and cell, one softmax per group. */
        float *in = net->layers[net->n-2].output;
        memcpy(l.output, in, l.outputs*sizeof(float));
        int n, loc, g;
        for(n = 0; n < l.n; ++n){
            int base = n*l.w*l.h*(l.coords + l.classes + 1);
            activate_array(l.output + base, 2*l.w*l.h, LOGISTIC);
            activate_array(l.output + base + l.coords*l.w*l.h, l.w*l.h, LOGISTIC);
            for(loc = 0; loc < l.w*l.h; ++loc){
                int count = 0;
                for(g = 0; g < l.softmax_tree->groups; ++g){
                    int off = base + (l.coords + 1 + count)*l.w*l.h + loc;
                    softmax(in + off, l.softmax_tree->group_size[g], 1, l.w*l.h, l.output + off);
                    count += l.softmax_tree->group_size[g];
                }
            }
        }
        write_floats(argv[4], "region_gpu.bin", l.output, l.outputs);
    }
    printf("image %d %d net %d %d\n", im.w, im.h, net->w, net->h);
    if(l.type == REGION){
        int nboxes = 0;
        detection *dets = get_network_boxes(net, im.w, im.h, thresh, hier, 0, 1, &nboxes);
        do_nms_sort(dets, nboxes, l.classes, .45);
        for(i = 0; i < nboxes; ++i) for(j = 0; j < l.classes; ++j) if(dets[i].prob[j] > thresh)
            printf("det %d %d %.9g %.9g %.9g %.9g %.9g %.9g\n", i, j, dets[i].prob[j], dets[i].objectness,
                   dets[i].bbox.x, dets[i].bbox.y, dets[i].bbox.w, dets[i].bbox.h);
    }
    return 0;
}
